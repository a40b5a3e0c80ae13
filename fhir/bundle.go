package fhir

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// Bundle is a parsed Bundle: its type, identifier and entries. Entry resources are
// validated Resources of their own.
type Bundle struct {
	ID         string
	Type       string // transaction, batch, collection, searchset, message, document, history, ...
	Identifier *Identifier
	Entries    []Entry
}

// Identifier is a FHIR Identifier (system and value only).
type Identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value,omitempty"`
}

// Entry is one Bundle.entry.
type Entry struct {
	FullURL  string
	Resource *Resource // nil when the entry has none (e.g. a DELETE request)
	Request  *EntryRequest
	Response *EntryResponse
}

// EntryRequest is Bundle.entry.request.
type EntryRequest struct {
	Method          string `json:"method"` // GET, HEAD, POST, PUT, DELETE, PATCH
	URL             string `json:"url"`
	IfNoneMatch     string `json:"ifNoneMatch,omitempty"`
	IfModifiedSince string `json:"ifModifiedSince,omitempty"`
	IfMatch         string `json:"ifMatch,omitempty"`
	IfNoneExist     string `json:"ifNoneExist,omitempty"`
}

// EntryResponse is Bundle.entry.response.
type EntryResponse struct {
	Status       string `json:"status"`
	Location     string `json:"location,omitempty"`
	Etag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
	// Outcome is an OperationOutcome (JSON), or nil: a failed batch entry's error, or what
	// a write did when the request asked for it (Prefer: return=OperationOutcome).
	Outcome json.RawMessage `json:"outcome,omitempty"`
}

// ParseBundle returns the Bundle in r. It returns errs.Invalid if r is not a Bundle, has no
// type, or a transaction or batch entry lacks a request with method and url (Path names the
// entry).
func ParseBundle(r *Resource) (*Bundle, error) {
	const op = "fhir.ParseBundle"
	if r.ResourceType != "Bundle" {
		return nil, errs.E(op, errs.Invalid, "not a Bundle")
	}
	var raw struct {
		Type       string      `json:"type"`
		Identifier *Identifier `json:"identifier"`
		Entry      []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
			Request  *EntryRequest   `json:"request"`
			Response *EntryResponse  `json:"response"`
		} `json:"entry"`
	}
	// Parse has rejected duplicate and case-variant keys, so encoding/json sees what we saw.
	if err := json.Unmarshal(r.raw, &raw); err != nil {
		return nil, errs.E(op, errs.Invalid, "invalid Bundle", err)
	}
	if raw.Type == "" {
		return nil, &errs.Error{Op: op, Code: errs.Invalid, Msg: "Bundle.type is required", Path: "Bundle.type"}
	}
	b := &Bundle{ID: r.ID, Type: raw.Type, Identifier: raw.Identifier, Entries: make([]Entry, len(raw.Entry))}
	for i, e := range raw.Entry {
		path := "Bundle.entry[" + strconv.Itoa(i) + "]"
		if (b.Type == "transaction" || b.Type == "batch") && (e.Request == nil || e.Request.Method == "" || e.Request.URL == "") {
			return nil, &errs.Error{Op: op, Code: errs.Invalid, Msg: "entry.request with method and url is required", Path: path + ".request"}
		}
		b.Entries[i] = Entry{FullURL: e.FullURL, Request: e.Request, Response: e.Response}
		if len(e.Resource) > 0 {
			res, err := Parse(e.Resource)
			if err != nil {
				return nil, errs.E(op, err)
			}
			b.Entries[i].Resource = res
		}
	}
	return b, nil
}

// Link is a Bundle.link.
type Link struct {
	Relation string `json:"relation"` // self, next, previous, first, last
	URL      string `json:"url"`
}

// SearchEntry is one entry of a searchset.
type SearchEntry struct {
	FullURL  string
	Resource *Resource
	Mode     string   // match, include or outcome
	Score    *float64 // for $match: 0..1
	// Extensions are raw JSON Extension objects for entry.search (e.g. match-grade).
	Extensions []json.RawMessage
}

// SearchSet is a searchset Bundle to write.
type SearchSet struct {
	ID        string
	Timestamp time.Time // optional
	Total     *int      // nil when _total=none
	Links     []Link
	Entries   []SearchEntry
}

type bundleOut struct {
	ResourceType string     `json:"resourceType"`
	ID           string     `json:"id,omitempty"`
	Type         string     `json:"type"`
	Timestamp    string     `json:"timestamp,omitempty"`
	Total        *int       `json:"total,omitempty"`
	Link         []Link     `json:"link,omitempty"`
	Entry        []entryOut `json:"entry,omitempty"`
}

type entryOut struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Search   *searchOut      `json:"search,omitempty"`
	Response *EntryResponse  `json:"response,omitempty"`
}

type searchOut struct {
	Extension []json.RawMessage `json:"extension,omitempty"`
	Mode      string            `json:"mode,omitempty"`
	Score     *float64          `json:"score,omitempty"`
}

// JSON renders the searchset Bundle. Resources are embedded byte for byte (compacted).
func (s SearchSet) JSON() ([]byte, error) {
	out := bundleOut{ResourceType: "Bundle", ID: s.ID, Type: "searchset", Total: s.Total, Link: s.Links}
	if !s.Timestamp.IsZero() {
		out.Timestamp = FormatInstant(s.Timestamp)
	}
	for _, e := range s.Entries {
		eo := entryOut{FullURL: e.FullURL}
		if e.Resource != nil {
			eo.Resource = e.Resource.raw
		}
		if e.Mode != "" || e.Score != nil || len(e.Extensions) > 0 {
			eo.Search = &searchOut{Extension: e.Extensions, Mode: e.Mode, Score: e.Score}
		}
		out.Entry = append(out.Entry, eo)
	}
	return encodeBundle(out, "fhir.SearchSet.JSON")
}

// ResponseEntry is one entry of a transaction-response or batch-response.
type ResponseEntry struct {
	FullURL  string
	Resource *Resource // optional (Prefer: return=representation)
	Response EntryResponse
}

// ResponseBundle renders a transaction-response (transaction true) or batch-response Bundle,
// one entry per request entry in the same order.
func ResponseBundle(id string, transaction bool, entries []ResponseEntry) ([]byte, error) {
	out := bundleOut{ResourceType: "Bundle", ID: id, Type: "batch-response"}
	if transaction {
		out.Type = "transaction-response"
	}
	for _, e := range entries {
		resp := e.Response
		eo := entryOut{FullURL: e.FullURL, Response: &resp}
		if e.Resource != nil {
			eo.Resource = e.Resource.raw
		}
		out.Entry = append(out.Entry, eo)
	}
	return encodeBundle(out, "fhir.ResponseBundle")
}

func encodeBundle(v bundleOut, op string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, errs.E(op, errs.Internal, err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
