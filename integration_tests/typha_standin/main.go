// The Typha stand-in: Typha's sync-protocol messages with Go's standard library only.
//
// The message types mirror Typha's syncproto definitions field for field and are
// registered under the same gob names, so their bytes on the wire are Typha's.
//
//	typha-standin fixtures DIR   write golden gob streams and what they hold (JSON)
//	typha-standin decode FILE    decode a gob stream of Envelopes, print each as JSON
//	typha-standin serve [flags]  serve a snapshot, then deltas, to "bgp" syncer clients
//	                             (TLS with client-certificate checks when --cert is given)
package main

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"time"

	. "bgpd/typha-standin/syncproto"
)

// described: a message as JSON, with its type's name (times as RFC 3339 with nanoseconds,
// KV values as text)
func described(m any) map[string]any {
	out := map[string]any{"type": reflect.TypeOf(m).Name(), "fields": m}
	switch v := m.(type) {
	case MsgPing:
		out["fields"] = map[string]any{"Timestamp": v.Timestamp.Format(time.RFC3339Nano)}
	case MsgPong:
		out["fields"] = map[string]any{"PingTimestamp": v.PingTimestamp.Format(time.RFC3339Nano),
			"PongTimestamp": v.PongTimestamp.Format(time.RFC3339Nano)}
	case MsgKVs:
		kvs := []map[string]any{}
		for _, kv := range v.KVs {
			var value any
			if kv.Value != nil {
				value = string(kv.Value)
			}
			kvs = append(kvs, map[string]any{"Key": kv.Key, "Value": value,
				"Revision": kv.Revision, "V3ResourceVersion": kv.V3ResourceVersion,
				"TTL": int64(kv.TTL), "UpdateType": kv.UpdateType})
		}
		out["fields"] = map[string]any{"KVs": kvs}
	}
	return out
}

func fixtures(dir string) error {
	ping := time.Date(2026, 12, 2, 17, 28, 10, 123456789, time.UTC)
	pong := time.Date(2026, 12, 2, 17, 28, 10, 223456789, time.FixedZone("", 3600))
	sets := map[string][]any{
		"hello": {
			MsgClientHello{Hostname: "node-2", Info: "bgpd", Version: "v3.33.0",
				SyncerType: "bgp", SupportsDecoderRestart: true,
				SupportedCompressionAlgorithms: []CompressionAlgorithm{"snappy"},
				SupportsModernPolicyKeys:       true, ClientConnID: 1 << 40},
			MsgServerHello{Version: "v3.33.0", SyncerType: "bgp",
				SupportsNodeResourceUpdates: true, ServerConnID: 7},
		},
		"session": {
			MsgKVs{KVs: []SerializedUpdate{
				{Key: "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool",
					Value:    []byte(`{"kind":"IPPool","spec":{"cidr":"172.17.0.0/12"}}`),
					Revision: "1234", V3ResourceVersion: "1234", UpdateType: 1},
				{Key: "/calico/ipam/v2/host/node-2/ipv4/block/172.17.2.0-24",
					Value: nil, Revision: "1240", TTL: 90 * time.Second, UpdateType: 3},
			}},
			MsgSyncStatus{SyncStatus: 2},
			MsgPing{Timestamp: ping},
			MsgPong{PingTimestamp: ping, PongTimestamp: pong},
			MsgACK{},
			MsgDecoderRestart{Message: "compression on", CompressionAlgorithm: "snappy"},
			MsgKVs{KVs: []SerializedUpdate{}},
			MsgSyncStatus{SyncStatus: 0},
		},
	}
	for name, messages := range sets {
		var buf bytes.Buffer
		enc := gob.NewEncoder(&buf)
		var expected []map[string]any
		for _, m := range messages {
			if err := enc.Encode(&Envelope{Message: m}); err != nil {
				return err
			}
			expected = append(expected, described(m))
		}
		if err := os.WriteFile(filepath.Join(dir, name+".gob"), buf.Bytes(), 0o644); err != nil {
			return err
		}
		// the same stream as Typha's snappy-compressed stream carries it
		var packed bytes.Buffer
		compressed := gob.NewEncoder(&snappyWriter{w: &packed})
		for _, m := range messages {
			if err := compressed.Encode(&Envelope{Message: m}); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name+".snappy"), packed.Bytes(), 0o644); err != nil {
			return err
		}
		text, err := json.MarshalIndent(expected, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".json"), append(text, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func decode(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := gob.NewDecoder(f)
	var out []map[string]any
	for {
		var e Envelope
		if err := dec.Decode(&e); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		out = append(out, described(e.Message))
	}
	text, err := json.Marshal(out)
	if err != nil {
		return err
	}
	fmt.Println(string(text))
	return nil
}

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "serve" {
		if err := serve(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "typha-standin:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: typha-standin fixtures DIR | decode FILE | serve ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "fixtures":
		err = fixtures(os.Args[2])
	case "decode":
		err = decode(os.Args[2])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "typha-standin:", err)
		os.Exit(1)
	}
}
