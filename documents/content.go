package documents

import (
	"bytes"
	"mime"
	"net/http"
	"strings"

	"github.com/concord-hie/concord/internal/errs"
)

// DefaultAllowedTypes are the media types accepted for document content when
// Config.AllowedTypes is empty. HTML and SVG are absent on purpose: served back from our
// origin they could run script. Archives are refused whatever the list says.
var DefaultAllowedTypes = []string{
	"text/plain", "text/markdown", "text/xml", "application/xml", "application/hl7-cda+xml",
	"application/pdf", "application/json", "application/fhir+json",
	"image/png", "image/jpeg", "image/gif", "image/tiff", "application/dicom",
}

// archiveTypes are refused as declared or sniffed types: a document is never a container
// of files (security.md §4).
var archiveTypes = map[string]bool{
	"application/zip": true, "application/x-zip-compressed": true, "application/gzip": true,
	"application/x-gzip": true, "application/x-tar": true, "application/x-7z-compressed": true,
	"application/vnd.rar": true, "application/x-rar-compressed": true, "application/x-bzip2": true,
	"application/x-xz": true, "application/zstd": true, "application/java-archive": true,
}

// isArchive recognises archive and compressed-stream magic numbers, including those
// http.DetectContentType does not know (tar, 7z, bzip2, xz, zstd).
func isArchive(b []byte) bool {
	switch {
	case bytes.HasPrefix(b, []byte("PK\x03\x04")), bytes.HasPrefix(b, []byte("PK\x05\x06")), bytes.HasPrefix(b, []byte("PK\x07\x08")):
		return true // zip (also docx, jar)
	case bytes.HasPrefix(b, []byte("\x1f\x8b")): // gzip
		return true
	case bytes.HasPrefix(b, []byte("7z\xbc\xaf\x27\x1c")):
		return true
	case bytes.HasPrefix(b, []byte("Rar!\x1a\x07")):
		return true
	case bytes.HasPrefix(b, []byte("BZh")), bytes.HasPrefix(b, []byte("\xfd7zXZ\x00")), bytes.HasPrefix(b, []byte("\x28\xb5\x2f\xfd")):
		return true
	case len(b) >= 262 && string(b[257:262]) == "ustar":
		return true
	}
	return false
}

// checkContent validates declared against the allow-list and against what the first bytes
// look like. It returns the media type to store (the declared one, normalised with its
// charset kept) or errs.Unsupported / errs.Invalid.
func checkContent(op string, allowed map[string]bool, declared string, head []byte) (string, error) {
	mt, params, err := mime.ParseMediaType(declared)
	if err != nil || declared == "" {
		return "", errs.E(op, errs.Invalid, "attachment.contentType is missing or malformed")
	}
	mt = strings.ToLower(mt)
	if archiveTypes[mt] || isArchive(head) {
		return "", errs.E(op, errs.Unsupported, "archives are not accepted as documents")
	}
	if !allowed[mt] {
		return "", errs.E(op, errs.Unsupported, "this content type is not accepted for documents")
	}
	sniffed, _, _ := mime.ParseMediaType(http.DetectContentType(head))
	if archiveTypes[sniffed] {
		return "", errs.E(op, errs.Unsupported, "archives are not accepted as documents")
	}
	if !compatible(mt, sniffed) {
		return "", errs.E(op, errs.Invalid, "the content does not look like its declared contentType")
	}
	out := mt
	if cs := params["charset"]; cs != "" {
		out = mime.FormatMediaType(mt, map[string]string{"charset": strings.ToLower(cs)})
	}
	return out, nil
}

// compatible reports whether content sniffed as sniffed may be stored as declared. Text
// formats sniff as text/plain (or text/xml); formats the sniffer does not know (DICOM,
// TIFF variants) sniff as application/octet-stream and are accepted only when declared as
// a binary type. Anything sniffed as HTML or script is refused unless it is declared as
// plain text or markdown, which we serve with nosniff and as an attachment.
func compatible(declared, sniffed string) bool {
	if declared == sniffed {
		return true
	}
	textual := strings.HasPrefix(declared, "text/") || strings.HasSuffix(declared, "xml") || strings.HasSuffix(declared, "json")
	switch sniffed {
	case "text/plain":
		return textual
	case "text/xml":
		return strings.HasSuffix(declared, "xml") || declared == "text/plain"
	case "text/html":
		return declared == "text/plain" || declared == "text/markdown"
	case "application/octet-stream":
		return declared == "application/dicom" || declared == "image/tiff"
	case "image/tiff":
		return declared == "image/tiff"
	}
	return false
}

// safeFilename returns the download name for a stored content: built from its binary id
// and its type, never from anything a sender wrote.
func safeFilename(binaryID, contentType string) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	ext := ".bin"
	switch mt {
	case "text/plain":
		ext = ".txt"
	case "text/markdown":
		ext = ".md"
	case "text/xml", "application/xml", "application/hl7-cda+xml":
		ext = ".xml"
	case "application/pdf":
		ext = ".pdf"
	case "application/json", "application/fhir+json":
		ext = ".json"
	case "image/png":
		ext = ".png"
	case "image/jpeg":
		ext = ".jpg"
	case "image/gif":
		ext = ".gif"
	case "image/tiff":
		ext = ".tiff"
	case "application/dicom":
		ext = ".dcm"
	}
	id := make([]byte, 0, len(binaryID))
	for i := 0; i < len(binaryID); i++ {
		c := binaryID[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' {
			id = append(id, c)
		}
	}
	return "document-" + string(id) + ext
}
