package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strings"
	"time"
)

// encodingVersion is the first byte of every encoding. A new layout gets a new version;
// old rows keep theirs and stay verifiable.
const encodingVersion = 1

// HashSize is the size of chain hashes and Merkle hashes.
const HashSize = sha256.Size

// Hash is a SHA-256 value.
type Hash [HashSize]byte

// Encode returns the canonical binary encoding of ev that the chain hashes. The layout is
// fixed and needs no reflection: a version byte; Time as signed 64-bit Unix microseconds;
// then Action, Outcome, Reason, Actor, Client, Org, Role, Purpose, Patient, Consent, TokenID,
// RequestID, SourceIP and Query, each as a 32-bit length and its bytes; ConsentVersion as a
// signed 64-bit integer; the resource count (32 bits) and each resource's Type and ID as
// length-prefixed strings; a flags byte (bit 0 BreakGlass, bit 1 ShareLink). Integers are
// big-endian. Seq is not part of the encoding; the chain hash adds it.
func Encode(ev *Event) []byte {
	n := 1 + 8 + 14*4 + 8 + 4 + 1 + len(ev.Reason) + len(ev.Actor) + len(ev.Client) + len(ev.Org) +
		len(ev.Role) + len(ev.Purpose) + len(ev.Patient) + len(ev.Consent) + len(ev.TokenID) +
		len(ev.RequestID) + len(ev.SourceIP) + len(ev.Query) + len(ev.Action) + len(ev.Outcome)
	for _, r := range ev.Resources {
		n += 8 + len(r.Type) + len(r.ID)
	}
	b := make([]byte, 0, n)
	b = append(b, encodingVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(ev.Time.UnixMicro()))
	for _, s := range [...]string{string(ev.Action), string(ev.Outcome), ev.Reason, ev.Actor, ev.Client,
		ev.Org, ev.Role, ev.Purpose, ev.Patient, ev.Consent, ev.TokenID, ev.RequestID, ev.SourceIP, ev.Query} {
		b = appendString(b, s)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(ev.ConsentVersion))
	b = binary.BigEndian.AppendUint32(b, uint32(len(ev.Resources)))
	for _, r := range ev.Resources {
		b = appendString(b, r.Type)
		b = appendString(b, r.ID)
	}
	var flags byte
	if ev.BreakGlass {
		flags |= 1
	}
	if ev.ShareLink {
		flags |= 2
	}
	return append(b, flags)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// errMalformed is the one decoding error; it says nothing about the content.
var errMalformed = errors.New("audit: malformed event encoding")

// Decode parses an encoding made by Encode. It is strict: an unknown version, a length past
// the end, unknown flag bits or trailing bytes are errors, so a decoded event encodes back to
// exactly the same bytes. Seq is left zero.
func Decode(b []byte) (Event, error) {
	d := decoder{b: b}
	var ev Event
	if d.byte() != encodingVersion {
		return Event{}, errMalformed
	}
	ev.Time = time.UnixMicro(int64(d.u64())).UTC()
	ev.Action = Action(d.str())
	ev.Outcome = Outcome(d.str())
	ev.Reason = d.str()
	ev.Actor = d.str()
	ev.Client = d.str()
	ev.Org = d.str()
	ev.Role = d.str()
	ev.Purpose = d.str()
	ev.Patient = d.str()
	ev.Consent = d.str()
	ev.TokenID = d.str()
	ev.RequestID = d.str()
	ev.SourceIP = d.str()
	ev.Query = d.str()
	ev.ConsentVersion = int64(d.u64())
	n := d.u32()
	if d.err || n > maxResources || uint64(n)*8 > uint64(len(d.b)) {
		return Event{}, errMalformed
	}
	if n > 0 {
		ev.Resources = make([]Resource, n)
		for i := range ev.Resources {
			ev.Resources[i] = Resource{Type: d.str(), ID: d.str()}
		}
	}
	flags := d.byte()
	if d.err || len(d.b) != 0 || flags&^3 != 0 {
		return Event{}, errMalformed
	}
	ev.BreakGlass = flags&1 != 0
	ev.ShareLink = flags&2 != 0
	return ev, nil
}

type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) byte() byte {
	if d.err || len(d.b) < 1 {
		d.err = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) u32() uint32 {
	if d.err || len(d.b) < 4 {
		d.err = true
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) u64() uint64 {
	if d.err || len(d.b) < 8 {
		d.err = true
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) str() string {
	n := d.u32()
	if d.err || uint64(n) > uint64(len(d.b)) {
		d.err = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// ChainHash returns SHA-256(prev || seq as 8 bytes big-endian || enc).
func ChainHash(prev Hash, seq int64, enc []byte) Hash {
	h := sha256.New()
	h.Write(prev[:])
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], uint64(seq))
	h.Write(s[:])
	h.Write(enc)
	var out Hash
	h.Sum(out[:0])
	return out
}

// resourceStrings renders resources as "Type/id" for the resources column.
func resourceStrings(rs []Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Type + "/" + r.ID
	}
	return out
}

// parseResources is the inverse of resourceStrings. A value without "/" becomes a resource
// with that type and no ID, which never matches an encoding made from a valid event.
func parseResources(ss []string) []Resource {
	if len(ss) == 0 {
		return nil
	}
	out := make([]Resource, len(ss))
	for i, s := range ss {
		t, id, _ := strings.Cut(s, "/")
		out[i] = Resource{Type: t, ID: id}
	}
	return out
}
