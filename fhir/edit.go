package fhir

import (
	"bytes"
	"encoding/json"
	"slices"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// member is one name/value pair of a JSON object, the value kept as raw bytes.
type member struct {
	Key   string
	Value []byte
}

// members splits the JSON object data into its members in order. data must be valid JSON
// (Parse has checked it); members reports false otherwise.
func members(data []byte) ([]member, bool) {
	s := scanner{data: data}
	if !s.consume('{') {
		return nil, false
	}
	var out []member
	if s.consume('}') {
		return out, true
	}
	for {
		k, ok := s.str()
		if !ok || !s.consume(':') {
			return nil, false
		}
		key := string(k)
		s.skipWS()
		start := s.pos
		if !s.skip(maxDepth) {
			return nil, false
		}
		out = append(out, member{Key: key, Value: data[start:s.pos]})
		if s.consume('}') {
			return out, true
		}
		if !s.consume(',') {
			return nil, false
		}
	}
}

// encodeMembers writes members back as a JSON object, values verbatim.
func encodeMembers(ms []member) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(jsonString(m.Key))
		b.WriteByte(':')
		b.Write(m.Value)
	}
	b.WriteByte('}')
	return b.Bytes()
}

func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func jsonValue(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// setMember replaces the value of key, or inserts it after the member named after (or at the
// end when after is absent).
func setMember(ms []member, key string, value []byte, after string) []member {
	for i := range ms {
		if ms[i].Key == key {
			ms[i].Value = value
			return ms
		}
	}
	for i := range ms {
		if ms[i].Key == after {
			ms = append(ms[:i+1], append([]member{{key, value}}, ms[i+1:]...)...)
			return ms
		}
	}
	return append(ms, member{key, value})
}

// Stamp lists the server-owned elements to write into a resource. Zero fields are left as
// they are.
type Stamp struct {
	ID          string    // Resource.id; must match [A-Za-z0-9\-\.]{1,64}
	VersionID   string    // meta.versionId; same format as an id
	LastUpdated time.Time // meta.lastUpdated, written in UTC with milliseconds
	Source      string    // meta.source (uri), e.g. the sending member's URI
	// AddTags are appended to meta.tag unless a tag with the same system and code is present.
	AddTags []Coding
	// DropTagSystems removes the meta.tag codings of these systems before AddTags are
	// added: tag systems only the server may set (a member's own source tag).
	DropTagSystems []string
	// Security replaces meta.security when ReplaceSecurity is set (so a client cannot set its
	// own labels); otherwise its codings are appended like AddTags.
	Security        []Coding
	ReplaceSecurity bool
}

// Stamp returns a copy of r with the elements in st written. Every other member of the
// resource and of meta keeps its bytes and order; new members are added after
// resourceType (id) or at the end (meta and its members). It returns errs.Invalid if an ID
// or VersionID is malformed.
func (r *Resource) Stamp(st Stamp) (*Resource, error) {
	const op = "fhir.Resource.Stamp"
	if st.ID != "" && !validID(st.ID) {
		return nil, errs.E(op, errs.Invalid, "invalid id")
	}
	if st.VersionID != "" && !validID(st.VersionID) {
		return nil, errs.E(op, errs.Invalid, "invalid versionId")
	}
	top, ok := members(r.raw)
	if !ok {
		return nil, errs.E(op, errs.Internal, "resource bytes are not a JSON object")
	}
	if st.ID != "" {
		top = setMember(top, "id", jsonString(st.ID), "resourceType")
	}
	var meta []member
	for _, m := range top {
		if m.Key == "meta" {
			if meta, ok = members(m.Value); !ok {
				return nil, errs.E(op, errs.Internal, "meta is not a JSON object")
			}
		}
	}
	metaChanged := false
	set := func(key string, v []byte) {
		meta = setMember(meta, key, v, "")
		metaChanged = true
	}
	if st.VersionID != "" {
		set("versionId", jsonString(st.VersionID))
	}
	if !st.LastUpdated.IsZero() {
		set("lastUpdated", jsonString(FormatInstant(st.LastUpdated)))
	}
	if st.Source != "" {
		set("source", jsonString(st.Source))
	}
	if len(st.AddTags) > 0 || len(st.DropTagSystems) > 0 {
		v, err := mergeCodings(meta, "tag", st.AddTags, false, st.DropTagSystems...)
		if err != nil {
			return nil, errs.E(op, errs.Invalid, "invalid meta.tag", err)
		}
		if string(v) != "[]" {
			set("tag", v)
		} else if i := slices.IndexFunc(meta, func(m member) bool { return m.Key == "tag" }); i >= 0 {
			meta = slices.Delete(meta, i, i+1) // every tag dropped: no empty array
			metaChanged = true
		}
	}
	if st.ReplaceSecurity || len(st.Security) > 0 {
		if st.ReplaceSecurity && len(st.Security) == 0 {
			for i := range meta {
				if meta[i].Key == "security" {
					meta = append(meta[:i], meta[i+1:]...)
					metaChanged = true
					break
				}
			}
		} else {
			v, err := mergeCodings(meta, "security", st.Security, st.ReplaceSecurity)
			if err != nil {
				return nil, errs.E(op, errs.Invalid, "invalid meta.security", err)
			}
			set("security", v)
		}
	}
	if metaChanged {
		if len(meta) == 0 {
			for i := range top {
				if top[i].Key == "meta" {
					top = append(top[:i], top[i+1:]...)
					break
				}
			}
		} else {
			top = setMember(top, "meta", encodeMembers(meta), "id")
		}
	}
	out, err := Parse(encodeMembers(top))
	if err != nil {
		return nil, errs.E(op, err)
	}
	return out, nil
}

// mergeCodings returns the JSON array for meta[key] with add appended (or replacing it).
// Existing codings keep their bytes, except those of a system in drop, which are removed;
// a coding already present (same system and code) is not added again.
func mergeCodings(meta []member, key string, add []Coding, replace bool, drop ...string) ([]byte, error) {
	var existing []json.RawMessage
	if !replace {
		for _, m := range meta {
			if m.Key == key {
				if err := json.Unmarshal(m.Value, &existing); err != nil {
					return nil, err
				}
			}
		}
	}
	type sc struct{ system, code string }
	have := map[sc]bool{}
	kept := existing[:0]
	for _, raw := range existing {
		var c Coding
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, err
		}
		if slices.Contains(drop, c.System) {
			continue
		}
		have[sc{c.System, c.Code}] = true
		kept = append(kept, raw)
	}
	existing = kept
	for _, c := range add {
		if have[sc{c.System, c.Code}] {
			continue
		}
		have[sc{c.System, c.Code}] = true
		v, err := jsonValue(c)
		if err != nil {
			return nil, err
		}
		existing = append(existing, v)
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, raw := range existing {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(raw)
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// FormatInstant writes t as a FHIR instant in UTC with millisecond precision.
func FormatInstant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
