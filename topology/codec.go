package topology

// This file is the only place that knows how values are encoded in etcd:
// protojson of the arbor.v1 messages (snake_case field names on output,
// either spelling accepted on input, unknown fields rejected), except the
// master key, which has no message yet and is strict encoding/json of
// masterValue. Everything else in the package works on the Go types of
// topology.go.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

var (
	// strict rejects unknown fields: a misspelt field is an error, not a
	// silently ignored setting.
	strict = protojson.UnmarshalOptions{DiscardUnknown: false}
	// lenient reads status values, which a newer component may extend.
	lenient = protojson.UnmarshalOptions{DiscardUnknown: true}
	// marshal writes snake_case names, as DESIGN.md spells them.
	marshal = protojson.MarshalOptions{UseProtoNames: true}
)

// masterValue is the value of the master key: {"node": "<node id>"}.
type masterValue struct {
	Node string `json:"node"`
}

// decodeValue unmarshals one topology value strictly.
func decodeValue(b []byte, m proto.Message) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("empty value: want a JSON object")
	}
	if err := strict.Unmarshal(b, m); err != nil {
		return fmt.Errorf("invalid value %s: %s", abbrev(b), cleanProtoErr(err))
	}
	return nil
}

// cleanProtoErr drops protojson's "proto:" prefix (which it spells with a
// random kind of space) from an error.
func cleanProtoErr(err error) string {
	s := err.Error()
	if rest, ok := strings.CutPrefix(s, "proto:"); ok {
		s = strings.TrimLeft(rest, " \u00a0")
	}
	return s
}

// abbrev quotes a value for an error message, shortened if long.
func abbrev(b []byte) string {
	const max = 60
	s := string(b)
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// checkID checks the id given inside a value against its key.
func checkID(what, inValue, fromKey string) error {
	if inValue != "" && inValue != fromKey {
		return fmt.Errorf("%s %q in the value differs from the key's %q", what, inValue, fromKey)
	}
	return nil
}

func decodeSite(name string, b []byte) (Site, error) {
	var m arborv1.Site
	if err := decodeValue(b, &m); err != nil {
		return Site{}, err
	}
	if err := checkID("name", m.GetName(), name); err != nil {
		return Site{}, err
	}
	return Site{Name: name, Description: m.GetDescription()}, nil
}

func decodeRelay(id string, b []byte) (RelaySpec, error) {
	var m arborv1.RelaySpec
	if err := decodeValue(b, &m); err != nil {
		return RelaySpec{}, err
	}
	if err := checkID("id", m.GetId(), id); err != nil {
		return RelaySpec{}, err
	}
	return RelaySpec{
		ID:        id,
		Site:      m.GetSite(),
		GRPCAddr:  m.GetGrpcAddr(),
		RedisAddr: m.GetRedisAddr(),
		Upstream:  m.GetUpstream(),
	}, nil
}

func decodeNode(id string, b []byte) (NodeSpec, error) {
	var m arborv1.NodeSpec
	if err := decodeValue(b, &m); err != nil {
		return NodeSpec{}, err
	}
	if err := checkID("id", m.GetId(), id); err != nil {
		return NodeSpec{}, err
	}
	return NodeSpec{
		ID:        id,
		Site:      m.GetSite(),
		RedisAddr: m.GetRedisAddr(),
		Candidate: m.GetCandidate(),
		Priority:  m.GetPriority(),
		Follow:    m.GetFollow(),
	}, nil
}

func decodeMaster(b []byte) (string, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return "", errors.New(`empty value: want {"node": "<node id>"}`)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var v masterValue
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("invalid value %s: %v", abbrev(b), err)
	}
	if dec.More() {
		return "", fmt.Errorf("invalid value %s: data after the JSON object", abbrev(b))
	}
	if v.Node == "" {
		return "", errors.New(`no node: want {"node": "<node id>"}`)
	}
	return v.Node, nil
}

// encodeProto marshals m compactly (protojson's output spacing varies on
// purpose; compacting makes it stable, so unchanged values compare equal).
func encodeProto(m proto.Message) ([]byte, error) {
	b, err := marshal.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func encodeSite(s Site) ([]byte, error) {
	return encodeProto(&arborv1.Site{Description: s.Description})
}

func encodeRelay(r RelaySpec) ([]byte, error) {
	return encodeProto(&arborv1.RelaySpec{
		Site:      r.Site,
		GrpcAddr:  r.GRPCAddr,
		RedisAddr: r.RedisAddr,
		Upstream:  r.Upstream,
	})
}

func encodeNode(n NodeSpec) ([]byte, error) {
	return encodeProto(&arborv1.NodeSpec{
		Site:      n.Site,
		RedisAddr: n.RedisAddr,
		Candidate: n.Candidate,
		Priority:  n.Priority,
		Follow:    n.Follow,
	})
}

// EncodeMaster encodes the value of MasterKey naming node (the election's
// leader writes it beside its master record).
func EncodeMaster(node string) ([]byte, error) { return encodeMaster(node) }

func encodeMaster(node string) ([]byte, error) {
	return json.Marshal(masterValue{Node: node})
}

// EncodeStatus encodes a status value for PublishStatus: protojson for a
// proto message, the bytes themselves for json.RawMessage or []byte, and
// encoding/json for anything else.
func EncodeStatus(v any) ([]byte, error) {
	switch v := v.(type) {
	case proto.Message:
		return encodeProto(v)
	case json.RawMessage:
		return v, nil
	case []byte:
		return v, nil
	}
	return json.Marshal(v)
}

// DecodeNodeStatus decodes a node status value. Unknown fields are
// ignored: a newer agent may publish more.
func DecodeNodeStatus(b []byte) (*arborv1.NodeStatus, error) {
	var m arborv1.NodeStatus
	if err := lenient.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("node status: %s", cleanProtoErr(err))
	}
	return &m, nil
}

// DecodeRelayStatus decodes a relay status value. Unknown fields are
// ignored: a newer relay may publish more.
func DecodeRelayStatus(b []byte) (*arborv1.RelayStatus, error) {
	var m arborv1.RelayStatus
	if err := lenient.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("relay status: %s", cleanProtoErr(err))
	}
	return &m, nil
}
