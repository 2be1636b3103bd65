package main

// The snappy framing format (the stream github.com/golang/snappy's Writer writes, which
// Typha compresses with), written with the standard library only: a greedy LZ77 block
// compressor and the framing's chunks with masked CRC-32C checksums.

import (
	"encoding/binary"
	"hash/crc32"
	"io"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

func putLiteral(dst, lit []byte) []byte {
	n := len(lit) - 1
	switch {
	case n < 60:
		dst = append(dst, byte(n<<2))
	case n < 1<<8:
		dst = append(dst, 60<<2, byte(n))
	default:
		dst = append(dst, 61<<2, byte(n), byte(n>>8))
	}
	return append(dst, lit...)
}

func putCopy(dst []byte, offset, length int) []byte {
	for length > 0 {
		n := length
		if n > 64 {
			n = 64
		}
		if n < 4 { // the shortest copy is 4: take it from the previous one
			n = length
		}
		if n >= 4 && n <= 11 && offset < 2048 {
			dst = append(dst, byte(offset>>8)<<5|byte(n-4)<<2|1, byte(offset))
		} else {
			dst = append(dst, byte(n-1)<<2|2, byte(offset), byte(offset>>8))
		}
		length -= n
	}
	return dst
}

// encodeBlock: a snappy block of src (at most 64 KiB), matches of 4 bytes or more.
func encodeBlock(src []byte) []byte {
	dst := binary.AppendUvarint(nil, uint64(len(src)))
	table := map[uint32]int{}
	lit := 0
	for i := 0; i+4 <= len(src); {
		key := binary.LittleEndian.Uint32(src[i:])
		cand, ok := table[key]
		table[key] = i
		if !ok || i-cand >= 1<<16 {
			i++
			continue
		}
		length := 4
		for i+length < len(src) && src[cand+length] == src[i+length] && length < 64 {
			length++
		}
		if lit < i {
			dst = putLiteral(dst, src[lit:i])
		}
		dst = putCopy(dst, i-cand, length)
		i += length
		lit = i
	}
	if lit < len(src) {
		dst = putLiteral(dst, src[lit:])
	}
	return dst
}

type snappyWriter struct {
	w       io.Writer
	started bool
}

func (s *snappyWriter) Write(p []byte) (int, error) {
	if !s.started {
		if _, err := s.w.Write([]byte("\xff\x06\x00\x00sNaPpY")); err != nil {
			return 0, err
		}
		s.started = true
	}
	for done := 0; done < len(p); {
		end := done + 65536
		if end > len(p) {
			end = len(p)
		}
		chunk := p[done:end]
		body := encodeBlock(chunk)
		kind := byte(0x00)
		if len(body) >= len(chunk) { // not worth it: an uncompressed chunk
			body, kind = chunk, 0x01
		}
		header := make([]byte, 8)
		size := len(body) + 4
		header[0], header[1], header[2], header[3] = kind, byte(size), byte(size>>8), byte(size>>16)
		binary.LittleEndian.PutUint32(header[4:], maskedCRC(chunk))
		if _, err := s.w.Write(append(header, body...)); err != nil {
			return done, err
		}
		done = end
	}
	return len(p), nil
}
