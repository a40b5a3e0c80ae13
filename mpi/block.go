package mpi

// Blocking: each record emits a few AND-keys; two records are candidates when they share
// one. A key whose block is larger than the cap is replaced by its refined key.

// Key kinds, mixed into the hash so equal values of different fields never collide.
const (
	keySSN = iota + 1
	keySSNLast4Year
	keyDOB
	keyDMGivenFamily
	keyDMFamilyYear
	keyDMGivenDOB
	keyNameTokens
	keyDOBTransposed
	keyPhone
	keyAddress
	keyHouseZIP
	keyIdentifier
)

// BlockKey is one blocking key of a record: Hash is the key; Fine is a refined key (Hash
// plus initials and birth year; for the DOB key, DM(given) + DOB) used instead when
// Hash's block is over the cap.
type BlockKey struct {
	Hash uint64
	Fine uint64
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

type hasher uint64

func newHasher(kind byte) hasher { return hasher(fnvOffset).byte(kind) }
func (h hasher) byte(b byte) hasher {
	return hasher((uint64(h) ^ uint64(b)) * fnvPrime)
}
func (h hasher) str(s string) hasher {
	for i := 0; i < len(s); i++ {
		h = h.byte(s[i])
	}
	return h.byte(0xff)
}
func (h hasher) u16(v int16) hasher { return h.byte(byte(v)).byte(byte(v >> 8)) }

// BlockKeys returns the blocking keys of r, at most one per kind (several for
// identifiers). A key whose inputs are missing or flagged as placeholders is not emitted.
// The server stores these keys; equal records always share every key.
func BlockKeys(r *Record) []BlockKey { return appendBlockKeys(make([]BlockKey, 0, 12), r) }

// appendBlockKeys appends the blocking keys of r to keys (see BlockKeys).
func appendBlockKeys(keys []BlockKey, r *Record) []BlockKey {
	first := len(keys)
	fine := func(h hasher) BlockKey {
		f := h.byte(0xfe)
		if r.Given != "" {
			f = f.byte(r.Given[0])
		}
		if r.Family != "" {
			f = f.byte(r.Family[0])
		}
		f = f.u16(r.Year)
		return BlockKey{Hash: uint64(h), Fine: uint64(f)}
	}
	dobOK := r.DOB != "" && r.Flags&FlagPlaceholderDOB == 0
	nameOK := r.Flags&FlagPlaceholderName == 0
	if r.SSN != "" {
		keys = append(keys, fine(newHasher(keySSN).str(r.SSN)))
	}
	if r.SSNLast != "" && r.Year != 0 {
		keys = append(keys, fine(newHasher(keySSNLast4Year).str(r.SSNLast).u16(r.Year)))
	}
	dobKey := -1
	if dobOK {
		dobKey = len(keys)
		keys = append(keys, fine(newHasher(keyDOB).str(r.DOB)))
		m, d := r.DOB[4:6], r.DOB[6:8]
		if m > d {
			m, d = d, m
		}
		if m != d {
			keys = append(keys, fine(newHasher(keyDOBTransposed).str(r.DOB[:4]).str(m).str(d)))
		}
	}
	if nameOK && r.GivenDM[0] != "" && r.FamilyDM[0] != "" {
		keys = append(keys, fine(newHasher(keyDMGivenFamily).str(r.GivenDM[0]).str(r.FamilyDM[0])))
	}
	if nameOK && r.FamilyDM[0] != "" && r.Year != 0 {
		keys = append(keys, fine(newHasher(keyDMFamilyYear).str(r.FamilyDM[0]).u16(r.Year)))
	}
	if nameOK && dobKey >= first && r.GivenDM[0] != "" {
		// DM(given) + DOB only narrows the DOB block, so it is emitted as the DOB key's
		// refinement rather than as a key of its own.
		keys[dobKey].Fine = uint64(newHasher(keyDMGivenDOB).str(r.GivenDM[0]).str(r.DOB))
	}
	if nameOK && r.NameKey != "" && r.Given != "" && r.Family != "" {
		keys = append(keys, fine(newHasher(keyNameTokens).str(r.NameKey)))
	}
	if r.Phone != "" {
		keys = append(keys, fine(newHasher(keyPhone).str(r.Phone)))
	}
	if r.AddrKey != "" {
		keys = append(keys, fine(newHasher(keyAddress).str(r.AddrKey)))
	}
	if r.House != "" && r.ZIP != "" {
		keys = append(keys, fine(newHasher(keyHouseZIP).str(r.House).str(r.ZIP)))
	}
	if r.Source.Value != "" {
		keys = append(keys, BlockKey{Hash: uint64(newHasher(keyIdentifier).str(r.Source.System).str(r.Source.Value))})
	}
	for _, id := range r.IDs {
		keys = append(keys, BlockKey{Hash: uint64(newHasher(keyIdentifier).str(id.System).str(id.Value))})
	}
	return keys
}

// DefaultBlockCap is the largest block that is used as is.
const DefaultBlockCap = 500

// Index holds posting lists from block keys to record numbers. It is not safe for
// concurrent writes; concurrent Candidates calls are safe once building is done.
type Index struct {
	post map[uint64][]uint32
	cap  int
}

// NewIndex returns an empty index with the given block cap (≤ 0 means DefaultBlockCap).
func NewIndex(blockCap int) *Index {
	if blockCap <= 0 {
		blockCap = DefaultBlockCap
	}
	return &Index{post: map[uint64][]uint32{}, cap: blockCap}
}

// Add indexes record number id under keys (both the plain and the refined hash).
func (ix *Index) Add(id uint32, keys []BlockKey) {
	for _, k := range keys {
		ix.post[k.Hash] = append(ix.post[k.Hash], id)
		if k.Fine != 0 {
			ix.post[k.Fine] = append(ix.post[k.Fine], id)
		}
	}
}

// Block returns the posting list used for k: the plain block when it is within the cap,
// else the refined block when that is, else nil (too common to be informative).
func (ix *Index) Block(k BlockKey) []uint32 {
	if p := ix.post[k.Hash]; len(p) <= ix.cap {
		return p
	}
	if k.Fine == 0 {
		return nil
	}
	if p := ix.post[k.Fine]; len(p) <= ix.cap {
		return p
	}
	return nil
}

// Candidates appends to dst the distinct record numbers sharing a usable block with keys,
// keeping only those for which keep returns true. seen is scratch space indexed by record
// number (len > every id), marked with stamp; callers bump stamp per query so it never
// needs clearing.
func (ix *Index) Candidates(dst []uint32, keys []BlockKey, seen []uint32, stamp uint32, keep func(uint32) bool) []uint32 {
	for _, k := range keys {
		for _, id := range ix.Block(k) {
			if seen[id] == stamp || !keep(id) {
				continue
			}
			seen[id] = stamp
			dst = append(dst, id)
		}
	}
	return dst
}
