package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

// errNotJSON is scanBundle's answer for input that is not one well-nested JSON object.
var errNotJSON = errors.New("answer is not JSON")

// scanBundle reads, in one pass over body and without decoding it, what parseBundle
// reports: the top-level resourceType, total (nil when absent) and the number of elements
// of the top-level entry array. The load generator shares the cores with the server, and
// decoding each 60 KB search page with encoding/json cost it twice the server's own CPU on
// S3. Strings (and their escapes) are skipped exactly, so brackets inside values and "entry"
// or "total" members of nested objects do not count. It fails on input that is not a
// well-nested object or whose resourceType or total is not a string or an integer.
func scanBundle(body []byte) (resourceType string, total *int, entries int, err error) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return "", nil, 0, errNotJSON
	}
	depth, inEntry, key := 0, false, ""
	for i < len(body) {
		c := body[i]
		switch {
		case c == '"':
			end, ok := stringEnd(body, i)
			if !ok {
				return "", nil, 0, errNotJSON
			}
			quoted := body[i:end]
			i = end
			if depth != 1 {
				continue
			}
			s, err := unquote(quoted)
			if err != nil {
				return "", nil, 0, err
			}
			if k := skipSpace(body, end); k < len(body) && body[k] == ':' {
				key, i = s, k+1 // a member name of the Bundle itself
				continue
			}
			if key == "resourceType" {
				resourceType = s
			}
			continue
		case c == '{' || c == '[':
			if inEntry && depth == 2 {
				entries++
			}
			if depth == 1 && key == "entry" {
				if c != '[' {
					return "", nil, 0, errNotJSON
				}
				inEntry = true
			}
			depth++
		case c == '}' || c == ']':
			depth--
			if depth < 0 {
				return "", nil, 0, errNotJSON
			}
			if depth == 1 {
				inEntry = false
			}
			if depth == 0 {
				if skipSpace(body, i+1) != len(body) {
					return "", nil, 0, errNotJSON // trailing data
				}
				return resourceType, total, entries, nil
			}
		case depth == 1 && key == "total" && (c == '-' || c >= '0' && c <= '9'):
			j := i + 1
			for j < len(body) && body[j] >= '0' && body[j] <= '9' {
				j++
			}
			n, err := strconv.Atoi(string(body[i:j]))
			if err != nil {
				return "", nil, 0, errNotJSON
			}
			total, key, i = &n, "", j
			continue
		}
		i++
	}
	return "", nil, 0, errNotJSON // unterminated
}

// unquote returns the text of the JSON string quoted (with its quotes); only a string with
// an escape is decoded.
func unquote(quoted []byte) (string, error) {
	if bytes.IndexByte(quoted, '\\') < 0 {
		return string(quoted[1 : len(quoted)-1]), nil
	}
	var s string
	if json.Unmarshal(quoted, &s) != nil {
		return "", errNotJSON
	}
	return s, nil
}

// stringEnd returns the index just past the JSON string starting at body[i] (a quote).
func stringEnd(body []byte, i int) (int, bool) {
	for j := i + 1; j < len(body); j++ {
		switch body[j] {
		case '\\':
			j++ // the escaped byte (\uXXXX's hex digits are plain bytes)
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// skipSpace returns the index of the first byte at or after i that is not JSON whitespace.
func skipSpace(body []byte, i int) int {
	for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r') {
		i++
	}
	return i
}
