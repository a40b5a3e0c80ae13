package documents

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/concord-hie/concord/internal/errs"
)

// DefaultAllowedTypes are the media types accepted for document content when
// Config.AllowedTypes is empty. HTML and SVG are absent on purpose: served back from our
// origin they could run script. Each has a signature check in typeChecks. Archives are
// refused whatever the list says.
var DefaultAllowedTypes = []string{
	"text/plain", "text/markdown", "text/xml", "application/xml", "application/hl7-cda+xml",
	"application/pdf", "application/json", "application/fhir+json",
	"image/png", "image/jpeg", "image/gif", "image/tiff", "application/dicom",
}

// archiveTypes are refused as declared types: a document is never a container of files
// (security.md §4). Bodies are scanned for containers whatever their declared type.
var archiveTypes = map[string]bool{
	"application/zip": true, "application/x-zip-compressed": true, "application/gzip": true,
	"application/x-gzip": true, "application/x-tar": true, "application/x-7z-compressed": true,
	"application/vnd.rar": true, "application/x-rar-compressed": true, "application/x-bzip2": true,
	"application/x-xz": true, "application/zstd": true, "application/java-archive": true,
}

// checkContent checks body, a whole document, against its declared media type and returns
// the media type to store: the declared one, lower-cased, with its charset parameter only
// for text. It returns errs.Invalid when declared is missing or malformed or when body does
// not carry the declared type's signature (see typeChecks), and errs.Unsupported when the
// type is not in allowed, names an archive, or when body holds an archive, compressed
// stream or executable anywhere (see findContainer).
func checkContent(op string, allowed map[string]bool, declared string, body []byte) (string, error) {
	mt, params, err := mime.ParseMediaType(declared)
	if err != nil || declared == "" {
		return "", errs.E(op, errs.Invalid, "attachment.contentType is missing or malformed")
	}
	mt = strings.ToLower(mt)
	if archiveTypes[mt] {
		return "", errs.E(op, errs.Unsupported, "archives are not accepted as documents")
	}
	if !allowed[mt] {
		return "", errs.E(op, errs.Unsupported, "this content type is not accepted for documents")
	}
	if c, ok := findContainer(body); ok {
		return "", errs.E(op, errs.Unsupported, "archives and executables are not accepted as documents",
			fmt.Errorf("%s signature at byte %d", c.Kind, c.At))
	}
	check, ok := typeChecks[mt]
	if !ok {
		check = sniffedAs(mt)
	}
	if !check(body) {
		return "", errs.E(op, errs.Invalid, "the content does not look like its declared contentType")
	}
	if !isTextType(mt) {
		return mt, nil
	}
	switch cs := strings.ToLower(params["charset"]); cs {
	case "":
		return mt, nil
	case "us-ascii":
		for _, c := range body {
			if c >= 0x80 {
				return "", errs.E(op, errs.Invalid, "the content is not in its declared charset")
			}
		}
		fallthrough
	case "utf-8", "utf8":
		return mime.FormatMediaType(mt, map[string]string{"charset": strings.Replace(cs, "utf8", "utf-8", 1)}), nil
	default:
		return "", errs.E(op, errs.Unsupported, "text documents must be UTF-8")
	}
}

// typeChecks holds, for each media type Concord knows, the positive test a body declared
// as that type must pass: a magic number at the start for binary formats, valid UTF-8
// without NUL bytes for text (plus a leading '<' for XML and a full parse for JSON). An
// allowed type without an entry is accepted only when http.DetectContentType names it
// exactly, never as application/octet-stream.
var typeChecks = map[string]func([]byte) bool{
	"text/plain":              isText,
	"text/markdown":           isText,
	"text/xml":                isXML,
	"application/xml":         isXML,
	"application/hl7-cda+xml": isXML,
	"application/json":        isJSON,
	"application/fhir+json":   isJSON,
	"application/pdf":         prefix("%PDF-"),
	"image/png":               prefix("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"),
	"image/jpeg":              prefix("\xff\xd8\xff"),
	"image/gif":               prefix("GIF87a", "GIF89a"),
	"image/tiff":              prefix("II*\x00", "MM\x00*", "II+\x00\x08\x00\x00\x00", "MM\x00+\x00\x08\x00\x00"), // TIFF, BigTIFF
	"application/dicom":       isDICOM,
}

func isTextType(mt string) bool {
	return strings.HasPrefix(mt, "text/") || strings.HasSuffix(mt, "xml") || strings.HasSuffix(mt, "json")
}

// prefix accepts a body that starts with one of magics.
func prefix(magics ...string) func([]byte) bool {
	return func(b []byte) bool {
		for _, m := range magics {
			if bytes.HasPrefix(b, []byte(m)) {
				return true
			}
		}
		return false
	}
}

// isText accepts valid UTF-8 without NUL bytes (a byte-order mark is fine). HTML and
// script pass: text is served with nosniff and as an attachment.
func isText(b []byte) bool {
	return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0
}

// isXML accepts text whose first non-blank character is '<' and that does not sniff as
// HTML.
func isXML(b []byte) bool {
	t := bytes.TrimLeft(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), " \t\r\n")
	return isText(b) && len(t) > 0 && t[0] == '<' && !strings.HasPrefix(http.DetectContentType(b), "text/html")
}

// isJSON accepts a complete JSON text in UTF-8.
func isJSON(b []byte) bool {
	return isText(b) && json.Valid(b)
}

// isDICOM accepts a DICOM Part 10 file: a 128-byte preamble, then "DICM". The preamble
// may hold anything (a TIFF header, for dual-personality files), so findContainer is what
// refuses an executable or archive there (the PE/DICOM polyglot of CVE-2019-11687).
func isDICOM(b []byte) bool {
	return len(b) >= 132 && string(b[128:132]) == "DICM"
}

// sniffedAs accepts a body that http.DetectContentType identifies as exactly mt.
func sniffedAs(mt string) func([]byte) bool {
	return func(b []byte) bool {
		sniffed, _, _ := mime.ParseMediaType(http.DetectContentType(b))
		return sniffed == mt && mt != "application/octet-stream"
	}
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
