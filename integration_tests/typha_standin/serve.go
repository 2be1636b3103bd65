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
	"log"
	"net"
	"os"
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
	order   []string
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
	if _, ok := h.state[u.Key]; !ok && u.Value != nil {
		h.order = append(h.order, u.Key)
	}
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

// subscribe: the current state and a channel of what follows it.
func (h *hub) subscribe() ([]SerializedUpdate, chan SerializedUpdate) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var snapshot []SerializedUpdate
	for _, k := range h.order {
		if u, ok := h.state[k]; ok {
			snapshot = append(snapshot, u)
		}
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
	compress := fs.Bool("compress", false, "restart the decoder after the hello: snappy when "+
		"the client offers it, else uncompressed")
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
		go handle(conn, h, connID, *ping, *pongTimeout, *compress)
	}
}

func handle(conn net.Conn, h *hub, id uint64, ping, pongTimeout time.Duration, compress bool) {
	defer conn.Close()
	if t, ok := conn.(*tls.Conn); ok {
		if err := t.Handshake(); err != nil {
			log.Printf("conn %d: TLS handshake: %v", id, err)
			return
		}
	}
	enc, dec := gob.NewEncoder(conn), gob.NewDecoder(conn)
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
	log.Printf("conn %d: hello from %s (%s %s)", id, ch.Hostname, ch.Info, ch.Version)
	var wmu sync.Mutex
	send := func(m any) error {
		wmu.Lock()
		defer wmu.Unlock()
		conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		return enc.Encode(&Envelope{Message: m})
	}
	if err := send(MsgServerHello{Version: "v3.33.0-standin", SyncerType: "bgp",
		SupportsNodeResourceUpdates: true, ServerConnID: id}); err != nil {
		return
	}
	if compress && ch.SupportsDecoderRestart {
		algorithm := CompressionAlgorithm("")
		for _, a := range ch.SupportedCompressionAlgorithms {
			if a == "snappy" {
				algorithm = a
			}
		}
		if err := send(MsgDecoderRestart{Message: "new stream", CompressionAlgorithm: algorithm}); err != nil {
			return
		}
		var ack Envelope // the client's ACK comes before anything in the new format
		if err := dec.Decode(&ack); err != nil {
			log.Printf("conn %d: waiting for the ACK: %v", id, err)
			return
		}
		if _, ok := ack.Message.(MsgACK); !ok {
			log.Printf("conn %d: not an ACK: %#v", id, ack.Message)
			return
		}
		if algorithm == "snappy" {
			enc = gob.NewEncoder(&snappyWriter{w: conn})
		} else {
			enc = gob.NewEncoder(conn)
		}
		log.Printf("conn %d: decoder restarted, compression %q", id, algorithm)
	}
	snapshot, updates := h.subscribe()
	defer h.unsubscribe(updates)
	if err := send(MsgSyncStatus{SyncStatus: 1}); err != nil { // ResyncInProgress
		return
	}
	for start := 0; start < len(snapshot); start += 100 {
		end := start + 100
		if end > len(snapshot) {
			end = len(snapshot)
		}
		if err := send(MsgKVs{KVs: snapshot[start:end]}); err != nil {
			return
		}
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
			for len(batch) < 100 {
				select {
				case more, ok := <-updates:
					if !ok {
						return
					}
					batch = append(batch, more)
					continue
				default:
				}
				break
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
