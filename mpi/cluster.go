package mpi

import (
	"context"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/concord-hie/concord/internal/errs"
)

// Candidate is a person and the records currently linked to it, as the store returns them.
type Candidate struct {
	Person  string
	Records []*Record
}

// Assignment is the decision for one new record against candidate persons.
type Assignment struct {
	Outcome Outcome
	// Person is the person joined (AutoLink) or the best-scoring person (Review, NoLink).
	Person      string
	Score       float64  // best edge score to Person
	Evidence    Evidence // of that best edge
	Guards      Guard    // guards fired against any record of Person
	RunnerUp    string
	RunnerScore float64
	// PossibleDuplicate is set when two persons both clear the link threshold: the record
	// joins neither and the two persons may be one.
	PossibleDuplicate bool
}

type personScore struct {
	score float64
	guard Guard
}

// choose applies the clustering rule to per-person scores and returns the outcome, the
// best and the runner-up person indexes (-1 when absent) and whether it is a possible
// duplicate.
func (m *Model) choose(ps []personScore) (Outcome, int, int, bool) {
	best, second := -1, -1
	for i, p := range ps {
		switch {
		case best < 0 || p.score > ps[best].score:
			best, second = i, best
		case second < 0 || p.score > ps[second].score:
			second = i
		}
	}
	if best < 0 || ps[best].score < m.Review {
		return NoLink, best, second, false
	}
	if ps[best].score < m.Link {
		return Review, best, second, false
	}
	if ps[best].guard != 0 {
		return Review, best, second, false
	}
	// Another person that also clears the threshold with no guard against it: the two
	// may be one person. A guarded person (a twin, a parent) is a known other person
	// and only counts towards the margin below.
	for i, p := range ps {
		if i != best && p.score >= m.Link && p.guard == 0 {
			return Review, best, i, true
		}
	}
	if second >= 0 && ps[second].score >= m.Review && ps[best].score-ps[second].score < m.Margin {
		return Review, best, second, false
	}
	return AutoLink, best, second, false
}

// Assign decides which candidate person, if any, the new record r joins. It scores r
// against every record of every candidate; a person's score is its best edge and its
// guards are those fired against any of its records. r joins a person only when that
// person clears the link threshold, beats the runner-up by the margin and fires no guard;
// two persons above the threshold give a possible-duplicate review. Persons are never
// merged here. r should be Prepared.
func (m *Model) Assign(r *Record, cands []Candidate) Assignment {
	ps := make([]personScore, len(cands))
	evs := make([]Evidence, len(cands))
	for i, c := range cands {
		ps[i].score = -1e9
		for _, o := range c.Records {
			w, ev := m.Score(r, o)
			ps[i].guard |= m.Guard(r, o, ev.Levels)
			if w > ps[i].score {
				ps[i].score, evs[i] = w, ev
			}
		}
	}
	out, b, s, dup := m.choose(ps)
	a := Assignment{Outcome: out, PossibleDuplicate: dup}
	if b >= 0 {
		a.Person, a.Score, a.Evidence, a.Guards = cands[b].Person, ps[b].score, evs[b], ps[b].guard
	}
	if s >= 0 {
		a.RunnerUp, a.RunnerScore = cands[s].Person, ps[s].score
	}
	return a
}

// BatchResult is the outcome of a batch link.
type BatchResult struct {
	Person  []int32   // person number of each record (0-based, dense)
	Outcome []Outcome // how each record was placed
	Reviews []ReviewItem
	Pairs   int64 // candidate pairs scored
	Persons int
}

// ReviewItem is a record sent to review, with the best other record and its score.
type ReviewItem struct {
	Record, Other     int
	Score             float64
	Guards            Guard
	PossibleDuplicate bool
}

type edge struct {
	j uint32
	w float32
}

// edgeList holds the scored edges of every record (to earlier records, at least in the
// review band) in one slice per chunk of parallel rather than one per record: most
// records have one edge or none, and a slice header per record cost more than its edges.
type edgeList struct {
	chunk [][]edge // the edges of the records of each chunk, record by record
	off   []uint32 // where record i's edges start in its chunk's slice
}

// of returns the edges of record i.
func (l *edgeList) of(i int) []edge {
	c := l.chunk[i/parallelChunk]
	end := len(c)
	if i+1 < len(l.off) && (i+1)%parallelChunk != 0 {
		end = int(l.off[i+1])
	}
	return c[l.off[i]:end]
}

// LinkBatch links recs as the server would if they arrived in order: each record is
// assigned against the persons formed by earlier records, by the same rule as Assign.
// Candidate scoring runs on workers goroutines (≤ 0: GOMAXPROCS). Records with the same
// Source identifier are one source record and share a person. recs are Prepared in place.
// progress, when not nil, is called with the number of records scored so far, possibly
// from several goroutines at once. It returns ctx's error, as errs.Unavailable, when
// cancelled.
func (m *Model) LinkBatch(ctx context.Context, recs []Record, workers int, progress func(done int)) (*BatchResult, error) {
	ptrs := make([]*Record, len(recs))
	for i := range recs {
		ptrs[i] = &recs[i]
	}
	return m.linkBatch(ctx, ptrStore(ptrs), workers, progress)
}

// batchScratch is one scoring goroutine's scratch space: seen marks candidates (see
// sortedIndex.candidates) and a, b hold records a store rebuilds.
type batchScratch struct {
	seen []uint32
	a, b Record
}

// linkBatch is LinkBatch over a recStore, so a caller can keep records in a compact form
// or in the chunks it built them in rather than copy them into one slice.
func (m *Model) linkBatch(ctx context.Context, recs recStore, workers int, progress func(done int)) (*BatchResult, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	n := recs.len()
	hot := make([]hotRec, n)
	parallel(n, workers, func(lo, hi int) {
		var tmp Record
		for i := lo; i < hi; i++ {
			r := recs.load(i, &tmp)
			m.Prepare(r)
			recs.setTF(i, r)
			hot[i] = newHotRec(r)
		}
	})
	// Block keys are not kept: they are hashed again wherever needed, which costs less
	// than the ~200 bytes a record they would hold for the whole run.
	ix := buildSortedIndex(recs, workers, DefaultBlockCap)
	edges := &edgeList{chunk: make([][]edge, (n+parallelChunk-1)/parallelChunk), off: make([]uint32, n)}
	var pairs, done atomic.Int64
	var cancelled atomic.Bool
	// One scratch per goroutine, not per chunk: seen is 4 bytes per record, and
	// allocating it for every chunk was most of the garbage of a run.
	scratch := make(chan *batchScratch, workers)
	for range workers {
		scratch <- &batchScratch{seen: make([]uint32, n)}
	}
	parallel(n, workers, func(lo, hi int) {
		sc := <-scratch
		defer func() { scratch <- sc }()
		seen := sc.seen
		var buf []uint32
		keys := make([]BlockKey, 0, 32)
		var local int64
		var es []edge // the edges of this chunk's records, record by record
		for i := lo; i < hi; i++ {
			if i%4096 == 0 && ctx.Err() != nil {
				cancelled.Store(true)
				return
			}
			ri := recs.load(i, &sc.a)
			keys = appendBlockKeys(keys[:0], ri)
			buf = ix.candidates(buf[:0], keys, seen, uint32(i)+1, uint32(i))
			edges.off[i] = uint32(len(es))
			hr := &hot[i]
			for _, j := range buf {
				local++
				if float64(m.hotBound(hr, &hot[j]))+1e-3 < m.Review {
					continue // cannot reach review whatever the names: skip without reading recs[j]
				}
				if w, ok := m.scoreFrom(ri, recs.load(int(j), &sc.b), m.Review); ok {
					es = append(es, edge{j, float32(w)})
				}
			}
		}
		edges.chunk[lo/parallelChunk] = slices.Clip(es)
		pairs.Add(local)
		if progress != nil {
			progress(int(done.Add(int64(hi - lo))))
		}
	})
	if cancelled.Load() {
		return nil, errs.E("mpi.Model.LinkBatch", errs.Unavailable, ctx.Err())
	}
	var ra, rb Record
	var bs [2]Record
	res := &BatchResult{Person: make([]int32, n), Outcome: make([]Outcome, n), Pairs: pairs.Load()}
	var members [][]uint32
	var sources sourceIndex
	var ps []personScore
	var pid []int32
	var bestRec []uint32
	for i := 0; i < n; i++ {
		r := recs.load(i, &ra)
		if r.Source.Value != "" {
			if p, ok := sources.get(recs, &rb, r.Source); ok {
				res.Person[i] = p
				res.Outcome[i] = AutoLink
				members[p] = append(members[p], uint32(i))
				continue
			}
		}
		ps, pid, bestRec = ps[:0], pid[:0], bestRec[:0]
		for _, e := range edges.of(i) {
			p := res.Person[e.j]
			k := slices.Index(pid, p)
			if k < 0 {
				pid = append(pid, p)
				ps = append(ps, personScore{score: float64(e.w)})
				bestRec = append(bestRec, e.j)
			} else if float64(e.w) > ps[k].score {
				ps[k].score, bestRec[k] = float64(e.w), e.j
			}
		}
		for k := range ps {
			if ps[k].score >= m.Link-m.Margin {
				for _, o := range members[pid[k]] {
					ro := recs.load(int(o), &rb)
					ps[k].guard |= m.Guard(r, ro, Compare(r, ro))
				}
			}
		}
		out, b, s, dup := m.choose(ps)
		if dup && m.bridged(recs, &bs, edges, members, pid[b], pid[s], r) {
			// Two persons that r both matches are also linked directly by another edge
			// and no guard fires across them: two independent supports, so merge.
			pb, pq := pid[b], pid[s]
			for _, o := range members[pq] {
				res.Person[o] = pb
			}
			members[pb] = append(members[pb], members[pq]...)
			members[pq] = nil
			out = AutoLink
		}
		res.Outcome[i] = out
		if out == AutoLink {
			p := pid[b]
			res.Person[i] = p
			members[p] = append(members[p], uint32(i))
		} else {
			p := int32(len(members))
			members = append(members, []uint32{uint32(i)})
			res.Person[i] = p
			if out == Review {
				res.Reviews = append(res.Reviews, ReviewItem{Record: i, Other: int(bestRec[b]), Score: ps[b].score, Guards: ps[b].guard, PossibleDuplicate: dup})
				_ = s
			}
		}
		if r.Source.Value != "" {
			sources.put(r.Source, uint32(i), res.Person[i])
		}
	}
	// renumber persons densely
	dense := make([]int32, len(members))
	for p, ms := range members {
		if len(ms) > 0 {
			dense[p] = int32(res.Persons)
			res.Persons++
		}
	}
	for i := range res.Person {
		res.Person[i] = dense[res.Person[i]]
	}
	if progress != nil {
		progress(n)
	}
	return res, nil
}

// sourceIndex maps a source identifier to the person its first record was placed in. It
// is keyed by a 64-bit hash and keeps that record's number to check the identifier; an
// identifier whose hash collides with another's goes to a map of its own. This takes a
// third of the memory of a map keyed by the identifiers' strings.
type sourceIndex struct {
	byHash map[uint64]sourceEntry
	other  map[Identifier]int32
	hash   func(Identifier) uint64 // nil: sourceHash (tests force collisions)
}

type sourceEntry struct {
	rec    uint32
	person int32
}

func sourceHash(id Identifier) uint64 {
	return uint64(newHasher(keyIdentifier).str(id.System).str(id.Value))
}

func (s *sourceIndex) hashOf(id Identifier) uint64 {
	if s.hash != nil {
		return s.hash(id)
	}
	return sourceHash(id)
}

// get returns the person of id, if put. scratch is used to load records.
func (s *sourceIndex) get(recs recStore, scratch *Record, id Identifier) (int32, bool) {
	e, ok := s.byHash[s.hashOf(id)]
	if !ok {
		return 0, false
	}
	if recs.load(int(e.rec), scratch).Source == id {
		return e.person, true
	}
	p, ok := s.other[id]
	return p, ok
}

// put records that id, first seen in record rec, was placed in person. id must not have
// been put before.
func (s *sourceIndex) put(id Identifier, rec uint32, person int32) {
	h := s.hashOf(id)
	if _, taken := s.byHash[h]; !taken {
		if s.byHash == nil {
			s.byHash = map[uint64]sourceEntry{}
		}
		s.byHash[h] = sourceEntry{rec: rec, person: person}
		return
	}
	if s.other == nil {
		s.other = map[Identifier]int32{}
	}
	s.other[id] = person
}

// bridged reports whether persons p and q are also joined by a direct edge (at least in
// the review band), besides r's edges to both at the link threshold, and no guard fires
// between any two records of p, q and r.
func (m *Model) bridged(recs recStore, scratch *[2]Record, edges *edgeList, members [][]uint32, p, q int32, r *Record) bool {
	direct := false
	for _, x := range members[p] {
		for _, y := range members[q] {
			hi, lo := x, y
			if lo > hi {
				hi, lo = lo, hi
			}
			for _, e := range edges.of(int(hi)) {
				if e.j == lo && float64(e.w) >= m.Review {
					direct = true
				}
			}
			rx, ry := recs.load(int(x), &scratch[0]), recs.load(int(y), &scratch[1])
			if m.Guard(rx, ry, Compare(rx, ry)) != 0 {
				return false
			}
		}
	}
	if !direct {
		return false
	}
	for _, ms := range [2][]uint32{members[p], members[q]} {
		for _, x := range ms {
			rx := recs.load(int(x), &scratch[0])
			if m.Guard(r, rx, Compare(r, rx)) != 0 {
				return false
			}
		}
	}
	return true
}

// parallelChunk is the size of the chunks parallel hands out; each starts at a multiple of it.
const parallelChunk = 2048

// parallel runs f over [0,n) split into chunks across workers.
func parallel(n, workers int, f func(lo, hi int)) {
	if workers < 1 {
		workers = 1
	}
	const chunk = parallelChunk
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				lo := int(next.Add(chunk)) - chunk
				if lo >= n {
					return
				}
				f(lo, min(lo+chunk, n))
			}
		})
	}
	wg.Wait()
}

// sortedIndex is a compact read-only block index: one sorted []uint64 whose entries pack
// the top bits of a key's hash above a record number, so each block is a run of entries
// with its records in increasing order. Truncating hashes can only merge two blocks (a
// few extra candidates), never split one. dir maps the top bits of an entry to the first
// entry with those bits, so a lookup searches a few entries instead of the whole array.
type sortedIndex struct {
	e      []uint64
	idBits uint // low bits holding the record number
	dir    []uint32
	dirSh  uint // entry >> dirSh is its dir slot
	cap    int
}

func (ix *sortedIndex) pack(h uint64, id uint32) uint64 { return h>>ix.idBits<<ix.idBits | uint64(id) }

// buildSortedIndex indexes the block keys of recs, hashing them on workers goroutines:
// once to size each chunk's share of the entries and once to fill it, then once more for
// the refined keys of over-cap blocks.
func buildSortedIndex(recs recStore, workers, blockCap int) *sortedIndex {
	n := recs.len()
	ix := &sortedIndex{idBits: uint(max(bits.Len(uint(n)), 1)), cap: blockCap}
	chunks := (n + parallelChunk - 1) / parallelChunk
	// fill hashes the keys of every chunk twice: count reports how many entries each
	// record adds, then put writes them from the chunk's offset in e.
	fill := func(e []uint64, count func(k []BlockKey) int, put func(dst []uint64, k []BlockKey, id uint32) []uint64) []uint64 {
		sizes := make([]int, chunks+1)
		parallel(n, workers, func(lo, hi int) {
			keys := make([]BlockKey, 0, 32)
			var tmp Record
			c := 0
			for i := lo; i < hi; i++ {
				keys = appendBlockKeys(keys[:0], recs.load(i, &tmp))
				c += count(keys)
			}
			sizes[lo/parallelChunk+1] = c
		})
		base := len(e)
		for c := 1; c <= chunks; c++ {
			sizes[c] += sizes[c-1]
		}
		e = slices.Grow(e, sizes[chunks])[:base+sizes[chunks]]
		parallel(n, workers, func(lo, hi int) {
			keys := make([]BlockKey, 0, 32)
			dst := e[base+sizes[lo/parallelChunk] : base+sizes[lo/parallelChunk]]
			var tmp Record
			for i := lo; i < hi; i++ {
				keys = appendBlockKeys(keys[:0], recs.load(i, &tmp))
				dst = put(dst, keys, uint32(i))
			}
		})
		return e
	}
	e := fill(nil, func(k []BlockKey) int { return len(k) }, func(dst []uint64, ks []BlockKey, id uint32) []uint64 {
		for _, k := range ks {
			dst = append(dst, ix.pack(k.Hash, id))
		}
		return dst
	})
	slices.Sort(e)
	// Refined keys are indexed only for records whose plain block is over the cap.
	big := map[uint64]bool{}
	for lo := 0; lo < len(e); {
		hi := lo
		for hi < len(e) && e[hi]>>ix.idBits == e[lo]>>ix.idBits {
			hi++
		}
		if hi-lo > blockCap {
			big[e[lo]>>ix.idBits] = true
		}
		lo = hi
	}
	if len(big) > 0 {
		refined := func(k BlockKey) bool { return k.Fine != 0 && big[k.Hash>>ix.idBits] }
		e = fill(e, func(ks []BlockKey) int {
			c := 0
			for _, k := range ks {
				if refined(k) {
					c++
				}
			}
			return c
		}, func(dst []uint64, ks []BlockKey, id uint32) []uint64 {
			for _, k := range ks {
				if refined(k) {
					dst = append(dst, ix.pack(k.Fine, id))
				}
			}
			return dst
		})
		slices.Sort(e)
	}
	ix.e = slices.Clip(e)
	dirBits := uint(max(bits.Len(uint(len(e)))-2, 1))
	ix.dirSh = 64 - dirBits
	ix.dir = make([]uint32, 1<<dirBits+1)
	j := 0
	for t := range ix.dir {
		for j < len(e) && e[j]>>ix.dirSh < uint64(t) {
			j++
		}
		ix.dir[t] = uint32(j)
	}
	return ix
}

// block returns the entries of h's block (record numbers in the low idBits).
func (ix *sortedIndex) block(h uint64) []uint64 {
	key := h >> ix.idBits
	t := h >> ix.dirSh
	e := ix.e[ix.dir[t]:ix.dir[t+1]]
	lo, _ := slices.BinarySearch(e, key<<ix.idBits)
	hi := lo
	for hi < len(e) && e[hi]>>ix.idBits == key {
		hi++
	}
	return e[lo:hi]
}

// candidates appends distinct record numbers below limit sharing a usable block.
func (ix *sortedIndex) candidates(dst []uint32, keys []BlockKey, seen []uint32, stamp, limit uint32) []uint32 {
	mask := uint64(1)<<ix.idBits - 1
	for _, k := range keys {
		b := ix.block(k.Hash)
		if len(b) > ix.cap {
			if k.Fine == 0 {
				continue
			}
			if b = ix.block(k.Fine); len(b) > ix.cap {
				continue
			}
		}
		for _, x := range b {
			id := uint32(x & mask)
			if id >= limit {
				break // ids are sorted within a block
			}
			if seen[id] != stamp {
				seen[id] = stamp
				dst = append(dst, id)
			}
		}
	}
	return dst
}
