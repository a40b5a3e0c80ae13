package audit

import (
	"crypto/sha256"
	"errors"
)

// Merkle tree hashing after RFC 6962 §2.1: a leaf hash is SHA-256(0x00 || leaf) and an
// interior node SHA-256(0x01 || left || right). The leaves of the audit tree are the events'
// chain hashes in seq order.

func leafHash(data []byte) Hash {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(data)
	var out Hash
	h.Sum(out[:0])
	return out
}

func nodeHash(l, r Hash) Hash {
	h := sha256.New()
	h.Write([]byte{1})
	h.Write(l[:])
	h.Write(r[:])
	var out Hash
	h.Sum(out[:0])
	return out
}

// frontier is a compact Merkle range over leaves [0, size): the roots of the perfect
// subtrees that the binary representation of size decomposes into, largest first. It lets
// the tree head grow one leaf at a time in O(log n) memory, and it can be saved with a
// checkpoint so the next checkpoint continues from there.
type frontier struct {
	size  int64
	nodes []Hash
}

// push appends one leaf (its data, which is hashed as a leaf).
func (f *frontier) push(data []byte) {
	h := leafHash(data)
	f.nodes = append(f.nodes, h)
	// Merge equal-sized subtrees: the number of merges is the number of trailing one bits.
	for s := f.size; s&1 == 1; s >>= 1 {
		n := len(f.nodes)
		f.nodes[n-2] = nodeHash(f.nodes[n-2], f.nodes[n-1])
		f.nodes = f.nodes[:n-1]
	}
	f.size++
}

// root returns the RFC 6962 tree head over all leaves pushed so far; the empty tree's head is
// SHA-256 of nothing.
func (f *frontier) root() Hash {
	if len(f.nodes) == 0 {
		return sha256.Sum256(nil)
	}
	acc := f.nodes[len(f.nodes)-1]
	for i := len(f.nodes) - 2; i >= 0; i-- {
		acc = nodeHash(f.nodes[i], acc)
	}
	return acc
}

// marshal returns size (8 bytes) followed by the node hashes.
func (f *frontier) marshal() []byte {
	b := make([]byte, 8, 8+len(f.nodes)*HashSize)
	for i := 0; i < 8; i++ {
		b[i] = byte(f.size >> (56 - 8*i))
	}
	for _, n := range f.nodes {
		b = append(b, n[:]...)
	}
	return b
}

func unmarshalFrontier(b []byte) (frontier, error) {
	if len(b) < 8 || (len(b)-8)%HashSize != 0 {
		return frontier{}, errors.New("audit: malformed Merkle frontier")
	}
	var f frontier
	for i := 0; i < 8; i++ {
		f.size = f.size<<8 | int64(b[i])
	}
	if f.size < 0 {
		return frontier{}, errors.New("audit: malformed Merkle frontier")
	}
	// The node count must equal the number of one bits in size.
	ones := 0
	for s := f.size; s != 0; s >>= 1 {
		ones += int(s & 1)
	}
	if ones != (len(b)-8)/HashSize {
		return frontier{}, errors.New("audit: malformed Merkle frontier")
	}
	for off := 8; off < len(b); off += HashSize {
		var h Hash
		copy(h[:], b[off:])
		f.nodes = append(f.nodes, h)
	}
	return f, nil
}
