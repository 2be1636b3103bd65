// Package syncproto mirrors Typha's sync-protocol messages field for field, registered
// under Typha's gob names, so that what this package encodes is what Typha sends.
package syncproto

import (
	"encoding/gob"
	"time"
)

type SyncerType string
type CompressionAlgorithm string
type SyncStatus uint8
type UpdateType uint8

type Envelope struct {
	Message any
}

type MsgClientHello struct {
	Hostname                       string
	Info                           string
	Version                        string
	SyncerType                     SyncerType
	SupportsDecoderRestart         bool
	SupportedCompressionAlgorithms []CompressionAlgorithm
	SupportsModernPolicyKeys       bool
	ClientConnID                   uint64
}

type MsgServerHello struct {
	Version                     string
	SyncerType                  SyncerType
	SupportsNodeResourceUpdates bool
	ServerConnID                uint64
}

type MsgDecoderRestart struct {
	Message              string
	CompressionAlgorithm CompressionAlgorithm
}

type MsgACK struct{}

type MsgSyncStatus struct {
	SyncStatus SyncStatus
}

type MsgPing struct {
	Timestamp time.Time
}

type MsgPong struct {
	PingTimestamp time.Time
	PongTimestamp time.Time
}

type SerializedUpdate struct {
	Key               string
	Value             []byte
	Revision          any
	V3ResourceVersion string
	TTL               time.Duration
	UpdateType        UpdateType
}

type MsgKVs struct {
	KVs []SerializedUpdate
}

const namePrefix = "github.com/projectcalico/typha/pkg/syncproto."

func init() {
	gob.RegisterName(namePrefix+"MsgClientHello", MsgClientHello{})
	gob.RegisterName(namePrefix+"MsgDecoderRestart", MsgDecoderRestart{})
	gob.RegisterName(namePrefix+"MsgACK", MsgACK{})
	gob.RegisterName(namePrefix+"MsgServerHello", MsgServerHello{})
	gob.RegisterName(namePrefix+"MsgSyncStatus", MsgSyncStatus{})
	gob.RegisterName(namePrefix+"MsgPing", MsgPing{})
	gob.RegisterName(namePrefix+"MsgPong", MsgPong{})
	gob.RegisterName(namePrefix+"MsgKVs", MsgKVs{})
}
