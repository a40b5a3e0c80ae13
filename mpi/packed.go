package mpi

import (
	"strings"
	"sync"
	"unsafe"
)

// recStore gives linkBatch its records by number. A store may keep records in a compact
// form and rebuild one into scratch on each load; what load returns is valid until
// scratch is reused and must not be modified except by Prepare followed by setTF.
type recStore interface {
	len() int
	// load returns record i, either as stored or rebuilt in scratch.
	load(i int, scratch *Record) *Record
	// setTF keeps the term-frequency features of r, a loaded record i after Prepare.
	setTF(i int, r *Record)
}

// ptrStore is a recStore over records kept whole.
type ptrStore []*Record

func (s ptrStore) len() int                      { return len(s) }
func (s ptrStore) load(i int, _ *Record) *Record { return s[i] }
func (s ptrStore) setTF(_ int, _ *Record)        {}

// internTable maps strings to dense ids and keeps one value per id. It is not safe for
// concurrent use.
type internTable[T any] struct {
	ids  map[string]uint32
	vals []T
}

func (t *internTable[T]) id(key string, mk func() T) uint32 {
	if id, ok := t.ids[key]; ok {
		return id
	}
	if t.ids == nil {
		t.ids = map[string]uint32{}
	}
	id := uint32(len(t.vals))
	t.ids[key] = id
	t.vals = append(t.vals, mk())
	return id
}

// nameInfo is a name and what a Record derives from it alone.
type nameInfo struct {
	s      string
	dm     [2]string
	ny     string
	groups []uint32
	head   uint32
}

// packedRec is a Record in about a fifth of the memory: repeated strings (names, streets,
// cities, ZIPs, assigning authorities) are ids into the store's tables, with the name
// features computed from them; the per-record strings are one blob in a chunk's arena.
// A record that does not fit (extra identifiers, a string over 255 bytes) is kept whole
// in ext.
type packedRec struct {
	ext  *Record
	blob string // Source.Value, DOB, SSN, SSNLast, Phone, House, NameKey, AddrKey
	lens [7]uint8
	gen  Generation

	system, given, middle, family, parts, street, unit, city, state, zip uint32

	year       int16
	month, day uint8
	sex        Sex
	flags      Flags
	tf         [4]float32
}

// packedStore is the recStore of LinkNDJSON: records packed as they are read, so the
// normalized Record of a line lives only while it is packed.
type packedStore struct {
	mu    sync.Mutex // guards the tables while records are added
	nick  *Nicknames
	strs  internTable[string]
	names internTable[nameInfo]
	parts internTable[[]string]
	recs  []*packedRec
}

func (s *packedStore) len() int { return len(s.recs) }

func (s *packedStore) setTF(i int, r *Record) {
	if p := s.recs[i]; p.ext == nil {
		p.tf = [4]float32{r.tfGiven, r.tfFamily, r.tfZIP, r.tfPhone}
	}
}

func (s *packedStore) load(i int, r *Record) *Record {
	p := s.recs[i]
	if p.ext != nil {
		return p.ext
	}
	b, o := p.blob, 0
	next := func(k int) string {
		v := b[o : o+int(p.lens[k])]
		o += int(p.lens[k])
		return v
	}
	g, f := &s.names.vals[p.given], &s.names.vals[p.family]
	*r = Record{
		Source:      Identifier{System: s.strs.vals[p.system], Value: next(0)},
		Given:       g.s,
		Middle:      s.strs.vals[p.middle],
		Family:      f.s,
		FamilyParts: s.parts.vals[p.parts],
		Generation:  p.gen,
		GivenGroups: g.groups,
		GivenHead:   g.head,
		GivenDM:     g.dm,
		FamilyDM:    f.dm,
		GivenNY:     g.ny,
		FamilyNY:    f.ny,
		DOB:         next(1),
		Year:        p.year,
		Month:       p.month,
		Day:         p.day,
		Sex:         p.sex,
		SSN:         next(2),
		SSNLast:     next(3),
		Phone:       next(4),
		House:       next(5),
		Street:      s.strs.vals[p.street],
		Unit:        s.strs.vals[p.unit],
		City:        s.strs.vals[p.city],
		State:       s.strs.vals[p.state],
		ZIP:         s.strs.vals[p.zip],
		Flags:       p.flags,
		tfGiven:     p.tf[0],
		tfFamily:    p.tf[1],
		tfZIP:       p.tf[2],
		tfPhone:     p.tf[3],
	}
	r.NameKey = next(6)
	r.AddrKey = b[o:]
	return r
}

// packChunk packs recs into dst, their blobs in one new arena. It returns dst.
func (s *packedStore) packChunk(dst []packedRec, recs []Record) []packedRec {
	size := 0
	for i := range recs {
		r := &recs[i]
		size += len(r.Source.Value) + len(r.DOB) + len(r.SSN) + len(r.SSNLast) + len(r.Phone) + len(r.House) + len(r.NameKey) + len(r.AddrKey)
	}
	arena := make([]byte, 0, size)
	offs := make([]int, 0, len(recs))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range recs {
		r := &recs[i]
		fields := [...]string{r.Source.Value, r.DOB, r.SSN, r.SSNLast, r.Phone, r.House, r.NameKey}
		fit := r.IDs == nil
		for _, v := range fields {
			fit = fit && len(v) <= 255
		}
		offs = append(offs, len(arena))
		if !fit {
			x := *r
			dst = append(dst, packedRec{ext: &x})
			continue
		}
		p := packedRec{gen: r.Generation, year: r.Year, month: r.Month, day: r.Day, sex: r.Sex, flags: r.Flags}
		for k, v := range fields {
			p.lens[k] = uint8(len(v))
			arena = append(arena, v...)
		}
		arena = append(arena, r.AddrKey...)
		str := func(v string) uint32 { return s.strs.id(v, func() string { return v }) }
		p.system, p.middle, p.street, p.unit = str(r.Source.System), str(r.Middle), str(r.Street), str(r.Unit)
		p.city, p.state, p.zip = str(r.City), str(r.State), str(r.ZIP)
		p.given = s.names.id(r.Given, func() nameInfo {
			return nameInfo{s: r.Given, dm: r.GivenDM, ny: r.GivenNY, groups: r.GivenGroups, head: r.GivenHead}
		})
		p.family = s.names.id(r.Family, func() nameInfo {
			ni := nameInfo{s: r.Family, dm: r.FamilyDM, ny: r.FamilyNY, groups: s.nick.Groups(r.Family)}
			if s.nick != nil {
				ni.head = s.nick.head[r.Family]
			}
			return ni
		})
		p.parts = s.parts.id(strings.Join(r.FamilyParts, " "), func() []string { return r.FamilyParts })
		dst = append(dst, p)
	}
	// The arena is complete: point the blobs into it.
	for i := range recs {
		p := &dst[len(dst)-len(recs)+i]
		if p.ext != nil {
			continue
		}
		end := len(arena)
		if i+1 < len(recs) {
			end = offs[i+1]
		}
		if end > offs[i] {
			p.blob = unsafe.String(&arena[offs[i]], end-offs[i])
		}
	}
	return dst
}
