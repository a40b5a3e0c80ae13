package documents

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"hash/crc32"
	"io"
	"math/bits"
)

// A container is an archive, compressed stream or executable found inside a document body.
type container struct {
	Kind string // "zip", "gzip", "elf", ...: safe to log
	At   int    // offset of its signature in the body
}

// findContainer reports the first archive, compressed-stream or executable in body: a
// document is never a container of files, nor a program (security.md §4). It looks at the
// whole body, not just its head, because readers find archives elsewhere: ZIP readers
// start from the end-of-central-directory record near the end of the file (so a PDF with
// a ZIP appended is both), 7-Zip, RAR and cabextract search for embedded archives, ISO 9660
// puts its volume descriptors at 32 KiB, and a DICOM file may hold an executable in its
// 128-byte preamble.
//
// The trade-off is false positives. Compressed image and PDF payloads look random, and a
// 32 MiB body holds any given 4-byte sequence about eight times by chance, so a magic
// number alone is enough only at the start of the body (no accepted type begins with one)
// and for the magics of 7 bytes or more. Elsewhere a match also needs the structure a
// reader relies on: a ZIP end-of-central-directory record whose central directory starts
// with a central file header, a ZIP local file header with a known compression method and
// a name that fits, a tar header whose checksum adds up, an xz or LZ4 header whose own
// checksum matches, a gzip header followed by data that inflates, and so on. By estimate
// each check needs more than 45 bits of such structure (gzip's inflating check let no
// random stream of 400,000 through), so a random 32 MiB body is refused with a probability
// around one in a million, a typical 1 MiB image far less often; a false positive costs a
// refused upload, never a leak. Apart from zstd's (see zstdFrame), the checks use only
// fields that common readers (Go, Python, Info-ZIP, libarchive, GNU tools) enforce, so an
// archive altered to dodge them is one that they will not open. Text gets the same scan:
// an ASCII cpio or ar archive is valid UTF-8.
//
// The cost is one pass over the body (about 100 ms for 32 MiB) plus bounded work per
// candidate: gzip candidates are inflated for at most 64 KiB of input each, and a body
// with more than maxProbes gzip or tar candidates is treated as a container (no real
// document has that many). findContainer needs the whole body: intake holds it in memory
// anyway (base64 in a JSON resource, or a patient upload read up to Config.MaxBytes) and
// checks it before the first byte goes to Blobs, so a refusal leaves no object behind.
func findContainer(body []byte) (container, bool) {
	sc := scan{b: body}
	for i := 0; i < len(body); i++ {
		for _, s := range sigsByLead[body[i]] {
			if !bytes.HasPrefix(body[i:], s.magic) {
				continue
			}
			if i == s.headAt && s.head || s.valid != nil && s.valid(&sc, i) {
				return container{Kind: s.kind, At: i}, true
			}
		}
	}
	// ISO 9660 and UDF: volume descriptors at fixed offsets, whatever precedes them (the
	// first 32 KiB are free for anything, a PDF header included).
	for _, off := range []int{0x8001, 0x8801, 0x9001} {
		if off+6 > len(body) || body[off+5] != 1 {
			continue
		}
		switch string(body[off : off+5]) {
		case "CD001", "BEA01", "NSR02", "NSR03", "TEA01":
			return container{Kind: "iso9660", At: off}, true
		}
	}
	return container{}, false
}

// signature is one container magic number.
type signature struct {
	kind  string
	magic []byte
	// head: at offset headAt (0 unless the magic sits inside a header, as tar's does), the
	// magic alone decides. Only for magics with a byte no text or accepted type starts with.
	head   bool
	headAt int
	// valid checks, at the offset of the magic, the structure it implies; nil means the
	// magic is looked for at headAt only.
	valid func(sc *scan, i int) bool
}

var signatures = []signature{
	{kind: "zip", magic: []byte("PK\x03\x04"), head: true, valid: zipLocalHeader},
	{kind: "zip", magic: []byte("PK\x05\x06"), head: true, valid: zipEnd},
	{kind: "zip", magic: []byte("PK\x07\x08"), head: true}, // spanned archive marker
	{kind: "7z", magic: []byte("7z\xbc\xaf\x27\x1c"), head: true, valid: at(6, 0)},
	{kind: "rar", magic: []byte("Rar!\x1a\x07\x00"), head: true, valid: always},
	{kind: "rar", magic: []byte("Rar!\x1a\x07\x01\x00"), head: true, valid: always},
	{kind: "gzip", magic: []byte("\x1f\x8b"), head: true, valid: gzipMember},
	{kind: "compress", magic: []byte("\x1f\x9d"), head: true},
	{kind: "bzip2", magic: []byte("BZh"), valid: bzip2Stream},
	{kind: "xz", magic: []byte("\xfd7zXZ\x00"), head: true, valid: xzStream},
	{kind: "zstd", magic: []byte("\x28\xb5\x2f\xfd"), head: true, valid: zstdFrame},
	{kind: "lz4", magic: []byte("\x04\x22\x4d\x18"), head: true, valid: lz4Frame},
	{kind: "lz4", magic: []byte("\x02\x21\x4c\x18"), head: true}, // legacy frame
	{kind: "lzip", magic: []byte("LZIP"), valid: lzipMember},
	{kind: "cab", magic: []byte("MSCF"), valid: cabinet},
	{kind: "cpio", magic: []byte("070701"), valid: digits(6, 104, 16)},
	{kind: "cpio", magic: []byte("070702"), valid: digits(6, 104, 16)},
	{kind: "cpio", magic: []byte("070707"), valid: digits(6, 70, 8)},
	{kind: "cpio", magic: []byte("\xc7\x71"), head: true},
	{kind: "cpio", magic: []byte("\x71\xc7"), head: true},
	{kind: "ar", magic: []byte("!<arch>\n"), valid: arArchive},
	{kind: "ar", magic: []byte("!<thin>\n"), valid: arArchive},
	{kind: "xar", magic: []byte("xar!"), valid: xarHeader},
	// "ustar" is also text ("mustard" at byte 256): a tar header's checksum decides.
	{kind: "tar", magic: []byte("ustar"), headAt: 257, valid: tarHeader},
	{kind: "cfb", magic: []byte("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"), head: true, valid: at(28, 0xfe, 0xff)}, // MSI, OLE
	{kind: "elf", magic: []byte("\x7fELF"), head: true, valid: elfHeader},
	{kind: "pe", magic: []byte("MZ"), valid: peHeader},
	{kind: "mach-o", magic: []byte("\xfe\xed\xfa\xce"), head: true, valid: machO},
	{kind: "mach-o", magic: []byte("\xfe\xed\xfa\xcf"), head: true, valid: machO},
	{kind: "mach-o", magic: []byte("\xce\xfa\xed\xfe"), head: true, valid: machO},
	{kind: "mach-o", magic: []byte("\xcf\xfa\xed\xfe"), head: true, valid: machO},
	{kind: "mach-o", magic: []byte("\xca\xfe\xba\xbe"), head: true, valid: machOFat},
}

// sigsByLead indexes signatures by their first byte, for the one pass over a body.
var sigsByLead = func() (t [256][]*signature) {
	for i := range signatures {
		s := &signatures[i]
		t[s.magic[0]] = append(t[s.magic[0]], s)
	}
	return t
}()

// scan is the state of one findContainer pass.
type scan struct {
	b      []byte
	probes int // gzip candidates inflated and tar checksums summed so far
	gz     *gzip.Reader
}

// maxProbes bounds the expensive checks (inflating a gzip candidate, summing a tar
// header) in one body; past it the body is treated as a container. Random data holds about
// two gzip candidates per 32 MiB; only a body crafted to be slow to scan reaches it, and
// before it does the scan has inflated at most maxProbes × 64 KiB.
const maxProbes = 128

func (sc *scan) u16(i int) int { return int(binary.LittleEndian.Uint16(sc.b[i:])) }
func (sc *scan) u32(i int) int { return int(binary.LittleEndian.Uint32(sc.b[i:])) }

// has reports whether b[i:i+n] is inside the body.
func (sc *scan) has(i, n int) bool { return i >= 0 && n >= 0 && i <= len(sc.b)-n }

func always(*scan, int) bool { return true }

// at requires bytes want at offset off from the magic.
func at(off int, want ...byte) func(*scan, int) bool {
	return func(sc *scan, i int) bool {
		return sc.has(i+off, len(want)) && bytes.Equal(sc.b[i+off:i+off+len(want)], want)
	}
}

// digits requires n digits of the given base after the magic's skip bytes (ASCII cpio).
func digits(skip, n, base int) func(*scan, int) bool {
	return func(sc *scan, i int) bool {
		if !sc.has(i+skip, n) {
			return false
		}
		for _, c := range sc.b[i+skip : i+skip+n] {
			ok := c >= '0' && c <= '7' || base == 16 && (c >= '8' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F')
			if !ok {
				return false
			}
		}
		return true
	}
}

// zipMethods are the compression methods of APPNOTE 4.4.5 that some reader implements.
var zipMethods = map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 8: true, 9: true, 10: true,
	12: true, 14: true, 16: true, 18: true, 19: true, 20: true, 93: true, 94: true, 95: true, 96: true, 97: true, 98: true, 99: true}

// zipLocalHeader: a local file header (what streaming readers such as Java's
// ZipInputStream and libarchive walk) with a known method and a name of 1 to 4096 bytes
// that fits in the body. Version and flags are not checked: Go's reader ignores them.
func zipLocalHeader(sc *scan, i int) bool {
	if !sc.has(i, 30) || !zipMethods[sc.u16(i+8)] {
		return false
	}
	name := sc.u16(i + 26)
	return name >= 1 && name <= 4096 && sc.has(i+30, name)
}

// zipEnd: an end-of-central-directory record (where Go, Python, Info-ZIP and Windows
// start) that is ZIP64's, or describes an empty archive, or whose central directory, just
// before it or at its absolute offset, starts with a central file header.
func zipEnd(sc *scan, i int) bool {
	if !sc.has(i, 22) {
		return false
	}
	n, cdSize, cdOff := sc.u16(i+10), sc.u32(i+12), sc.u32(i+16)
	if n == 0xffff || cdSize == 0xffffffff || cdOff == 0xffffffff {
		return sc.has(i-20, 4) && string(sc.b[i-20:i-16]) == "PK\x06\x07" // ZIP64 locator
	}
	if n == 0 {
		return sc.u16(i+8) == 0 && cdSize == 0
	}
	for _, c := range []int{i - cdSize, cdOff} {
		if sc.has(c, 4) && c < i && string(sc.b[c:c+4]) == "PK\x01\x02" {
			return true
		}
	}
	return false
}

// gzipMember: method deflate, then a stream that inflates without error to a complete
// member whose CRC-32 and size match, to 256 KiB of output, or through 64 KiB of input.
// Random bytes after a gzip header inflate for a few hundred bytes at most (a 512-byte
// target let about 1 in 10,000 through). Flag, XFL and OS bytes are not checked: Go's
// reader ignores them.
func gzipMember(sc *scan, i int) bool {
	if !sc.has(i, 10) || sc.b[i+2] != 8 {
		return false
	}
	if sc.probes++; sc.probes > maxProbes {
		return true
	}
	const window, output = 64 << 10, 256 << 10
	end := min(len(sc.b), i+window)
	r := bytes.NewReader(sc.b[i:end])
	var err error
	if sc.gz == nil {
		sc.gz, err = gzip.NewReader(r)
	} else {
		err = sc.gz.Reset(r)
	}
	if err != nil {
		return false
	}
	sc.gz.Multistream(false)
	n, err := io.CopyN(io.Discard, sc.gz, output)
	switch {
	case n == output, err == io.EOF: // EOF: the trailer's CRC-32 and size matched
		return true
	case err == io.ErrUnexpectedEOF:
		return end < len(sc.b) // cut by the window, not by the body
	}
	return false
}

// bzip2Stream: "BZh", a block size digit, then a block or end-of-stream magic (48 bits).
func bzip2Stream(sc *scan, i int) bool {
	if !sc.has(i, 10) || sc.b[i+3] < '1' || sc.b[i+3] > '9' {
		return false
	}
	m := string(sc.b[i+4 : i+10])
	return m == "\x31\x41\x59\x26\x53\x59" || m == "\x17\x72\x45\x38\x50\x90"
}

// xzStream: stream flags with a known check type and their CRC-32.
func xzStream(sc *scan, i int) bool {
	if !sc.has(i, 12) || sc.b[i+6] != 0 {
		return false
	}
	switch sc.b[i+7] {
	case 0x00, 0x01, 0x04, 0x0a:
	default:
		return false
	}
	return crc32.ChecksumIEEE(sc.b[i+6:i+8]) == uint32(sc.u32(i+8))
}

// lz4Frame: version 01, reserved bits clear, a valid block size and the frame
// descriptor's header checksum (the second byte of its XXH32).
func lz4Frame(sc *scan, i int) bool {
	if !sc.has(i, 7) {
		return false
	}
	flg, bd := sc.b[i+4], sc.b[i+5]
	if flg>>6 != 1 || flg&0x02 != 0 || bd&0x8f != 0 || bd>>4 < 4 {
		return false
	}
	n := 2
	if flg&0x08 != 0 {
		n += 8 // content size
	}
	if flg&0x01 != 0 {
		n += 4 // dictionary id
	}
	if !sc.has(i+4, n+1) {
		return false
	}
	return byte(xxh32(sc.b[i+4:i+4+n])>>8) == sc.b[i+4+n]
}

// xxh32 is XXH32 with seed 0 of an input shorter than 16 bytes (LZ4 frame descriptors).
func xxh32(b []byte) uint32 {
	const p1, p2, p3, p4, p5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
	h := uint32(p5) + uint32(len(b))
	for ; len(b) >= 4; b = b[4:] {
		h += binary.LittleEndian.Uint32(b) * p3
		h = bits.RotateLeft32(h, 17) * p4
	}
	for _, c := range b {
		h += uint32(c) * p5
		h = bits.RotateLeft32(h, 11) * p1
	}
	h ^= h >> 15
	h *= p2
	h ^= h >> 13
	h *= p3
	h ^= h >> 16
	return h
}

// lzipMember: version 1, a dictionary size lzip accepts (4 KiB to 512 MiB) and the zero
// byte every LZMA stream starts with (liblzma checks it).
func lzipMember(sc *scan, i int) bool {
	if !sc.has(i, 7) || sc.b[i+4] != 1 || sc.b[i+6] != 0 {
		return false
	}
	ds := sc.b[i+5]
	base, frac := int(ds&0x1f), int(ds>>5)
	size := 1<<base - frac*(1<<base)/16
	return base <= 29 && size >= 4<<10
}

// cabinet: at least one folder and file, the file table and the first folder's data
// inside the body, and a compression type libmspack knows (none, MSZIP, Quantum, LZX).
func cabinet(sc *scan, i int) bool {
	if !sc.has(i, 36) || sc.u16(i+26) == 0 || sc.u16(i+28) == 0 {
		return false
	}
	flags, folder := sc.u16(i+30), i+36
	if flags&0x0004 != 0 { // reserve fields present
		if !sc.has(folder, 4) {
			return false
		}
		folder += 4 + sc.u16(folder)
	}
	for k := 0; k < bits.OnesCount(uint(flags&0x0003))*2; k++ { // previous and next cabinet names
		end := bytes.IndexByte(sc.b[min(folder, len(sc.b)):min(folder+256, len(sc.b))], 0)
		if end < 0 {
			return false
		}
		folder += end + 1
	}
	if !sc.has(folder, 8) || sc.b[folder+6]&0x0f > 3 {
		return false
	}
	files, data := sc.u32(i+16), sc.u32(folder)
	return files >= 36 && sc.has(i+files, 16) && data >= 36 && sc.has(i+data, 8)
}

// arArchive: the first member header ends with "`\n", or the archive is empty.
func arArchive(sc *scan, i int) bool {
	return i+8 == len(sc.b) || sc.has(i+8, 60) && string(sc.b[i+66:i+68]) == "`\n"
}

// xarHeader: version 1, a header of at least 28 bytes and a known TOC checksum type.
func xarHeader(sc *scan, i int) bool {
	if !sc.has(i, 28) {
		return false
	}
	be := binary.BigEndian
	return be.Uint16(sc.b[i+4:]) >= 28 && be.Uint16(sc.b[i+6:]) == 1 && be.Uint32(sc.b[i+24:]) <= 4
}

// tarHeader: "ustar" at 257 of a 512-byte header whose checksum (unsigned or signed sum,
// as archive/tar accepts) adds up.
func tarHeader(sc *scan, i int) bool {
	h := i - 257
	if !sc.has(h, 512) {
		return false
	}
	hdr := sc.b[h : h+512]
	if m := string(hdr[257:265]); m != "ustar\x0000" && m != "ustar  \x00" {
		return false
	}
	field := bytes.Trim(hdr[148:156], " \x00")
	if len(field) == 0 {
		return false
	}
	want := 0
	for _, c := range field {
		if c < '0' || c > '7' {
			return false
		}
		want = want*8 + int(c-'0')
	}
	if sc.probes++; sc.probes > maxProbes {
		return true
	}
	unsigned, signed := 0, 0
	for j, c := range hdr {
		if j >= 148 && j < 156 {
			c = ' '
		}
		unsigned += int(c)
		signed += int(int8(c))
	}
	return want == unsigned || want == signed
}

// elfHeader: class, data encoding and version of a real ELF identification.
func elfHeader(sc *scan, i int) bool {
	return sc.has(i, 7) && (sc.b[i+4] == 1 || sc.b[i+4] == 2) && (sc.b[i+5] == 1 || sc.b[i+5] == 2) && sc.b[i+6] == 1
}

// peHeader: the DOS header's e_lfanew names a "PE\0\0" signature inside the body. A text
// that starts with "MZ" is not refused.
func peHeader(sc *scan, i int) bool {
	if !sc.has(i, 0x40) {
		return false
	}
	pe := i + sc.u32(i+0x3c)
	return sc.has(pe, 4) && string(sc.b[pe:pe+4]) == "PE\x00\x00"
}

// machOCPUs are the CPU types of Mach-O binaries.
var machOCPUs = map[uint32]bool{7: true, 0x01000007: true, 12: true, 0x0100000c: true, 0x0200000c: true, 18: true, 0x01000012: true}

// machO: a thin Mach-O header with a known CPU type and a file type from 1 to 12.
func machO(sc *scan, i int) bool {
	if !sc.has(i, 16) {
		return false
	}
	var bo binary.ByteOrder = binary.BigEndian
	if sc.b[i] != 0xfe {
		bo = binary.LittleEndian
	}
	ft := bo.Uint32(sc.b[i+12:])
	return machOCPUs[bo.Uint32(sc.b[i+4:])] && ft >= 1 && ft <= 12
}

// machOFat: a universal binary with 1 to 30 architectures, the first of a known CPU type
// (a Java class file has the same magic but a version of 45 or more there).
func machOFat(sc *scan, i int) bool {
	if !sc.has(i, 12) {
		return false
	}
	n := binary.BigEndian.Uint32(sc.b[i+4:])
	return n >= 1 && n <= 30 && machOCPUs[binary.BigEndian.Uint32(sc.b[i+8:])]
}

// zstdFrame: a frame header as the reference encoder writes it (reserved and unused bits
// clear, no dictionary: only the start of a body is read by zstd, so an embedded frame
// matters less than a false positive) with a window a decoder accepts, then blocks that
// parse: raw and RLE blocks are walked to the last one (whose total must
// equal the frame content size when the header gives it); the first compressed block must
// have a literals section and a sequences section header that fit it exactly.
func zstdFrame(sc *scan, i int) bool {
	p := i + 4
	if !sc.has(p, 1) {
		return false
	}
	fhd := sc.b[p]
	p++
	if fhd&0x18 != 0 || fhd&0x03 != 0 {
		return false // reserved or unused bit set, or a dictionary: not the reference encoder
	}
	single, fcsFlag := fhd&0x20 != 0, fhd>>6
	if !single {
		if !sc.has(p, 1) || sc.b[p]>>3 > 21 { // window log above 31
			return false
		}
		p++
	}
	fcsLen := [4]int{0, 2, 4, 8}[fcsFlag]
	if single && fcsFlag == 0 {
		fcsLen = 1
	}
	if !sc.has(p, fcsLen) {
		return false
	}
	fcs, known := uint64(0), fcsLen > 0
	for k := fcsLen - 1; k >= 0; k-- {
		fcs = fcs<<8 | uint64(sc.b[p+k])
	}
	if fcsLen == 2 {
		fcs += 256
	}
	p += fcsLen
	total := uint64(0)
	for range 16 {
		if !sc.has(p, 3) {
			return false
		}
		bh := int(sc.b[p]) | int(sc.b[p+1])<<8 | int(sc.b[p+2])<<16
		p += 3
		last, typ, size := bh&1 != 0, bh>>1&3, bh>>3
		if size > 128<<10 {
			return false
		}
		switch typ {
		case 0: // raw
			if !sc.has(p, size) {
				return false
			}
			p += size
		case 1: // RLE
			if !sc.has(p, 1) {
				return false
			}
			p++
		case 2:
			return sc.has(p, size) && zstdCompressedBlock(sc.b[p:p+size])
		default:
			return false
		}
		total += uint64(size)
		if last {
			return !known || total == fcs
		}
	}
	return true // sixteen well-formed blocks in a row
}

// zstdCompressedBlock checks the literals section header and the sequences section header
// of the first compressed block of a frame.
func zstdCompressedBlock(blk []byte) bool {
	if len(blk) < 2 {
		return false
	}
	b0 := int(blk[0])
	typ, sf := b0&3, b0>>2&3
	var hdr, regen, lits int
	switch typ {
	case 0, 1: // raw, RLE
		switch sf {
		case 0, 2:
			hdr, regen = 1, b0>>3
		case 1:
			hdr, regen = 2, b0>>4|int(blk[1])<<4
		case 3:
			if len(blk) < 3 {
				return false
			}
			hdr, regen = 3, b0>>4|int(blk[1])<<4|int(blk[2])<<12
		}
		lits = regen
		if typ == 1 {
			lits = 1
		}
	default: // compressed, treeless
		if typ == 3 {
			return false // treeless: no earlier Huffman table to reuse
		}
		hdr = [4]int{3, 3, 4, 5}[sf]
		if len(blk) < hdr {
			return false
		}
		var v uint64
		for k := hdr - 1; k >= 0; k-- {
			v = v<<8 | uint64(blk[k])
		}
		bitsEach := [4]int{10, 10, 14, 18}[sf]
		mask := uint64(1)<<bitsEach - 1
		regen, lits = int(v>>4&mask), int(v>>(4+bitsEach)&mask)
		if lits == 0 {
			return false
		}
	}
	if regen > 128<<10 {
		return false
	}
	q := hdr + lits
	if q >= len(blk) {
		return false
	}
	nb := int(blk[q])
	switch {
	case nb == 0:
		return q+1 == len(blk)
	case nb < 128:
		q++
	case nb < 255:
		q += 2
	default:
		q += 3
	}
	if q >= len(blk) {
		return false
	}
	modes := blk[q]
	if modes&3 != 0 {
		return false
	}
	if modes>>6 == 3 || modes>>4&3 == 3 || modes>>2&3 == 3 {
		return false // repeat mode with nothing to repeat
	}
	return q+1 < len(blk)
}
