package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/gob"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	. "bgpd/typha-standin/syncproto"
)

// kv is one line of a snapshot or deltas file: a model key, its value (null: deleted).
type kv struct {
	Key      string          `json:"key"`
	Value    json.RawMessage `json:"value"`
	Revision string          `json:"revision"`
}

// hub holds the current state and the connected clients' delta channels.
type hub struct {
	mu      sync.Mutex
	state   map[string]SerializedUpdate
	clients map[chan SerializedUpdate]bool
}

func update(e kv) SerializedUpdate {
	u := SerializedUpdate{Key: e.Key, Revision: e.Revision, V3ResourceVersion: e.Revision}
	if len(e.Value) == 0 || string(e.Value) == "null" {
		u.UpdateType = UpdateType(3) // UpdateTypeKVDeleted
	} else {
		u.Value = []byte(e.Value)
		u.UpdateType = UpdateType(1) // UpdateTypeKVNew
	}
	return u
}

func (h *hub) apply(u SerializedUpdate) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if u.Value == nil {
		delete(h.state, u.Key)
	} else {
		h.state[u.Key] = u
	}
	for c := range h.clients {
		select {
		case c <- u:
		default: // a client that does not keep up is dropped, as Typha drops it
			close(c)
			delete(h.clients, c)
		}
	}
}

// subscribe: the current state in ascending key order (Typha's snapshot cache is a B-tree
// of keys walked with Ascend: typha/pkg/syncserver/sync_server.go writeSnapshotMessages)
// and a channel of what follows it.
func (h *hub) subscribe() ([]SerializedUpdate, chan SerializedUpdate) {
	h.mu.Lock()
	defer h.mu.Unlock()
	keys := make([]string, 0, len(h.state))
	for k := range h.state {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	snapshot := make([]SerializedUpdate, 0, len(keys))
	for _, k := range keys {
		snapshot = append(snapshot, h.state[k])
	}
	c := make(chan SerializedUpdate, 100000)
	h.clients[c] = true
	return snapshot, c
}

func (h *hub) unsubscribe(c chan SerializedUpdate) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clients[c] {
		delete(h.clients, c)
		close(c)
	}
}

func readLines(path string, from int64, each func(kv)) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return from, err
	}
	defer f.Close()
	if _, err := f.Seek(from, 0); err != nil {
		return from, err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	pos := from
	for {
		line, err := r.ReadBytes('\n')
		if err != nil { // an unfinished last line is read again later
			return pos, nil
		}
		pos += int64(len(line))
		var e kv
		if err := json.Unmarshal(line, &e); err != nil {
			log.Printf("deltas: skipping a line that is not JSON: %v", err)
			continue
		}
		each(e)
	}
}

func verifier(roots *x509.CertPool, cn, uriSAN string) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, chains [][]*x509.Certificate) error {
		if len(chains) == 0 || len(chains[0]) == 0 {
			return errors.New("no verified client certificate")
		}
		leaf := chains[0][0]
		cnOK := cn != "" && leaf.Subject.CommonName == cn
		uriOK := false
		for _, u := range leaf.URIs {
			if uriSAN != "" && u.String() == uriSAN {
				uriOK = true
			}
		}
		if (cn != "" || uriSAN != "") && !cnOK && !uriOK {
			return fmt.Errorf("client certificate CN %q has neither the required CN %q nor URI SAN %q",
				leaf.Subject.CommonName, cn, uriSAN)
		}
		return nil
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	certFile := fs.String("cert", "", "server certificate (TLS when set)")
	keyFile := fs.String("key", "", "server key")
	caFile := fs.String("ca", "", "CA of client certificates")
	clientCN := fs.String("client-cn", "", "required client certificate CN")
	clientURI := fs.String("client-uri-san", "", "required client certificate URI SAN")
	snapshot := fs.String("snapshot", "", "JSON list of {key, value, revision}")
	deltas := fs.String("deltas", "", "JSON lines appended while serving")
	ping := fs.Duration("ping", 10*time.Second, "ping interval")
	pongTimeout := fs.Duration("pong-timeout", 60*time.Second, "close a client without pong")
	portFile := fs.String("port-file", "", "write the address listened on here")
	fs.Parse(args)

	h := &hub{state: map[string]SerializedUpdate{}, clients: map[chan SerializedUpdate]bool{}}
	if *snapshot != "" {
		data, err := os.ReadFile(*snapshot)
		if err != nil {
			return err
		}
		var entries []kv
		if err := json.Unmarshal(data, &entries); err != nil {
			return fmt.Errorf("snapshot %s: %w", *snapshot, err)
		}
		for _, e := range entries {
			h.apply(update(e))
		}
	}
	var ln net.Listener
	var err error
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return err
		}
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return errors.New("no CA certificate in " + *caFile)
		}
		config := &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
			VerifyPeerCertificate: verifier(pool, *clientCN, *clientURI)}
		ln, err = tls.Listen("tcp", *listen, config)
		if err != nil {
			return err
		}
	} else if ln, err = net.Listen("tcp", *listen); err != nil {
		return err
	}
	if *portFile != "" {
		if err := os.WriteFile(*portFile+".tmp", []byte(ln.Addr().String()), 0o644); err != nil {
			return err
		}
		if err := os.Rename(*portFile+".tmp", *portFile); err != nil {
			return err
		}
	}
	if *deltas != "" {
		go func() {
			var pos int64
			for {
				pos, _ = readLines(*deltas, pos, func(e kv) { h.apply(update(e)) })
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	var connID uint64
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		connID++
		go handle(conn, h, connID, *ping, *pongTimeout)
	}
}

// stream: a gob encoder whose every message is flushed to the connection as it is sent,
// through snappy's framing when compression is on (Typha's sendMsg + flushWriter).
type stream struct {
	enc   *gob.Encoder
	flush func() error
}

func newStream(conn net.Conn, compression CompressionAlgorithm) stream {
	var out io.Writer = conn
	if compression == "snappy" {
		out = &snappyWriter{w: conn}
	}
	buffered := bufio.NewWriterSize(out, 65536) // snappy's largest block
	return stream{enc: gob.NewEncoder(buffered), flush: buffered.Flush}
}

func (s stream) send(m any) error {
	if err := s.enc.Encode(&Envelope{Message: m}); err != nil {
		return err
	}
	return s.flush()
}

// binarySnapshot: the snapshot as Typha's snapshot cache precomputes it for a client that
// takes snappy (typha/pkg/syncserver/snap_precalc.go writeDataToSnapshot): a snappy stream
// of its own, a gob encoder of its own, MsgKVs of up to 1,000 KVs in key order, ending in a
// MsgDecoderRestart.
func binarySnapshot(conn net.Conn, snapshot []SerializedUpdate) error {
	s := newStream(conn, "snappy")
	for start := 0; start < len(snapshot); start += 1000 {
		end := min(start+1000, len(snapshot))
		if err := s.enc.Encode(&Envelope{Message: MsgKVs{KVs: snapshot[start:end]}}); err != nil {
			return err
		}
	}
	if err := s.enc.Encode(&Envelope{Message: MsgDecoderRestart{
		Message: "End of compressed snapshot.", CompressionAlgorithm: "snappy"}}); err != nil {
		return err
	}
	return s.flush()
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

// handle: one client, in the order of Typha's connection.handle (sync_server.go): hello
// (refused without SupportsModernPolicyKeys), server hello; for a client that restarts its
// decoder and offers snappy, a decoder restart ("enable compression: snappy;send binary
// snapshot"), its ACK, the binary snapshot, its ACK, then a fresh snappy stream; otherwise
// the snapshot streamed in MsgKVs of 100 on the first stream. Then the sync status (InSync:
// no status goes before the snapshot), the deltas in MsgKVs of up to 100, and pings.
func handle(conn net.Conn, h *hub, id uint64, ping, pongTimeout time.Duration) {
	defer conn.Close()
	if t, ok := conn.(*tls.Conn); ok {
		if err := t.Handshake(); err != nil {
			log.Printf("conn %d: TLS handshake: %v", id, err)
			return
		}
	}
	dec := gob.NewDecoder(conn)
	var hello Envelope
	if err := dec.Decode(&hello); err != nil {
		log.Printf("conn %d: reading hello: %v", id, err)
		return
	}
	ch, ok := hello.Message.(MsgClientHello)
	if !ok || ch.SyncerType != "bgp" {
		log.Printf("conn %d: not a bgp syncer hello: %#v", id, hello.Message)
		return
	}
	if !ch.SupportsModernPolicyKeys {
		log.Printf("conn %d: client does not support modern policy keys", id)
		return
	}
	log.Printf("conn %d: hello from %s (%s %s)", id, ch.Hostname, ch.Info, ch.Version)
	compression := CompressionAlgorithm("")
	for _, a := range ch.SupportedCompressionAlgorithms {
		if a == "snappy" && ch.SupportsDecoderRestart {
			compression = a
		}
	}
	var wmu sync.Mutex
	out := newStream(conn, "")
	send := func(m any) error {
		wmu.Lock()
		defer wmu.Unlock()
		conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		return out.send(m)
	}
	if err := send(MsgServerHello{Version: "v3.33.0-standin", SyncerType: "bgp",
		SupportsNodeResourceUpdates: true, ServerConnID: id}); err != nil {
		return
	}
	ack := func() bool { // the client's ACK comes before anything in the new format
		var e Envelope
		if err := dec.Decode(&e); err != nil {
			log.Printf("conn %d: waiting for the ACK: %v", id, err)
			return false
		}
		if _, ok := e.Message.(MsgACK); !ok {
			log.Printf("conn %d: not an ACK: %#v", id, e.Message)
			return false
		}
		return true
	}
	snapshot, updates := h.subscribe()
	defer h.unsubscribe(updates)
	if compression == "snappy" {
		reasons := []string{"enable compression: snappy", "send binary snapshot"}
		if err := send(MsgDecoderRestart{Message: strings.Join(reasons, ";"),
			CompressionAlgorithm: compression}); err != nil || !ack() {
			return
		}
		conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if err := binarySnapshot(conn, snapshot); err != nil || !ack() {
			return
		}
		out = newStream(conn, compression)
		log.Printf("conn %d: binary snapshot of %d KVs sent, compression %q", id,
			len(snapshot), compression)
	} else {
		for start := 0; start < len(snapshot); start += 100 {
			end := min(start+100, len(snapshot))
			if err := send(MsgKVs{KVs: snapshot[start:end]}); err != nil {
				return
			}
		}
		log.Printf("conn %d: snapshot of %d KVs streamed", id, len(snapshot))
	}
	if err := send(MsgSyncStatus{SyncStatus: 2}); err != nil { // InSync
		return
	}
	pongs := make(chan time.Time, 10)
	go func() {
		for {
			var e Envelope
			if err := dec.Decode(&e); err != nil {
				close(pongs)
				return
			}
			if p, ok := e.Message.(MsgPong); ok {
				pongs <- p.PingTimestamp
			}
		}
	}()
	ticker := time.NewTicker(ping)
	defer ticker.Stop()
	lastPong := time.Now()
	for {
		select {
		case u, ok := <-updates:
			if !ok {
				return
			}
			batch := []SerializedUpdate{u}
		more:
			for len(batch) < 100 {
				select {
				case next, ok := <-updates:
					if !ok {
						return
					}
					batch = append(batch, next)
				default:
					break more
				}
			}
			if err := send(MsgKVs{KVs: batch}); err != nil {
				return
			}
		case _, ok := <-pongs:
			if !ok {
				log.Printf("conn %d: client gone", id)
				return
			}
			lastPong = time.Now()
		case now := <-ticker.C:
			if now.Sub(lastPong) > pongTimeout {
				log.Printf("conn %d: no pong for %v", id, now.Sub(lastPong))
				return
			}
			if err := send(MsgPing{Timestamp: now}); err != nil {
				return
			}
		}
	}
}
