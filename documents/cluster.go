package documents

// Near-duplicate clustering (standards.md §10, "cross-member document de-dup"): identical
// bytes are already one Listing; documents whose bytes differ but that are evidently the
// same clinical document (the same discharge summary rendered by two EHRs, a re-sent copy
// with another footer) are clustered here by (person, type, author organization, clinical
// day) so a list shows them once: "3 copies from 2 organizations". Clustering is presentation
// only: every copy stays stored, listed in its Cluster and openable on its own.

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/concord-hie/concord/fhir"
)

// Traits are what near-duplicate clustering compares of one document.
type Traits struct {
	// Person is the person (MPI) the document is about: documents of different persons never
	// cluster. It is the person, not the member's Patient, so copies from two members meet.
	Person string
	// TypeCode is the document type (LOINC); a document without one never clusters.
	TypeCode string
	// AuthorOrg is the authoring organization ("Organization/{id}", an absolute URL of one,
	// or "identifier:{system}|{value}"); "" when the document names none, in which case the
	// sending member stands in for it.
	AuthorOrg string
	// MemberID is the member that sent the document.
	MemberID string
	// Date is the clinical date: context.period.start, else date. It compares by calendar
	// day in UTC; zero (absent, or coarser than a day) never clusters.
	Date time.Time
	// FromAuthor reports that the author organization sent this copy itself (its directory
	// Organization is AuthorOrg); such a copy is preferred as a cluster's primary.
	FromAuthor bool
}

// TraitsOf reads a DocumentReference's type, author organization and clinical date. Person,
// MemberID and FromAuthor are the caller's to fill. A body that does not parse gives zero
// Traits, which never cluster.
func TraitsOf(body []byte) Traits {
	r, _ := ParseReference(body)
	return r.Traits
}

// Reference is what a document list shows and clusters by of one DocumentReference.
type Reference struct {
	Status string
	// Title is type.text, else the first coding's display, else "Clinical document".
	Title string
	// Date is the clinical date at whatever precision it has: context.period.start, else
	// date; zero when absent or unreadable. Traits.Date is the same, when at least a day.
	Date   time.Time
	Traits Traits
}

// ParseReference reads body, a DocumentReference, in one parse; ok is false when it does not
// parse (the zero Reference, whose Traits never cluster).
func ParseReference(body []byte) (r Reference, ok bool) {
	var d struct {
		Status string `json:"status"`
		Type   *struct {
			Coding []fhir.Coding `json:"coding"`
			Text   string        `json:"text"`
		} `json:"type"`
		Date   string `json:"date"`
		Author []struct {
			Reference  string `json:"reference"`
			Type       string `json:"type"`
			Identifier *struct {
				System string `json:"system"`
				Value  string `json:"value"`
			} `json:"identifier"`
		} `json:"author"`
		Context *struct {
			Period *struct {
				Start string `json:"start"`
			} `json:"period"`
		} `json:"context"`
	}
	if json.Unmarshal(body, &d) != nil {
		return Reference{}, false
	}
	r.Status, r.Title = d.Status, "Clinical document"
	t := &r.Traits
	if d.Type != nil {
		for _, c := range d.Type.Coding {
			if c.Code != "" && (t.TypeCode == "" || c.System == "http://loinc.org") {
				t.TypeCode = c.Code
				if c.System == "http://loinc.org" {
					break
				}
			}
		}
		if i := slices.IndexFunc(d.Type.Coding, func(c fhir.Coding) bool { return c.Display != "" }); i >= 0 {
			r.Title = d.Type.Coding[i].Display
		}
		if d.Type.Text != "" {
			r.Title = d.Type.Text
		}
	}
	for _, a := range d.Author {
		if ref := orgReference(a.Reference); ref != "" {
			t.AuthorOrg = ref
			break
		}
		if a.Type == "Organization" && a.Identifier != nil && a.Identifier.System != "" && a.Identifier.Value != "" {
			t.AuthorOrg = "identifier:" + a.Identifier.System + "|" + a.Identifier.Value
			break
		}
	}
	raw := d.Date
	if d.Context != nil && d.Context.Period != nil && d.Context.Period.Start != "" {
		raw = d.Context.Period.Start
	}
	if v, err := fhir.ParseDateTime(raw); err == nil {
		r.Date = v.Low
		if v.Precision >= fhir.PrecisionDay {
			t.Date = v.Low
		}
	}
	return r, true
}

// orgReference returns ref without its version when it names an Organization (relative or
// absolute), else "". A contained reference ("#org") is local to its document and never
// compares.
func orgReference(ref string) string {
	ref, _, _ = strings.Cut(ref, "/_history/")
	i := strings.LastIndex(ref, "Organization/")
	if i < 0 || (i > 0 && ref[i-1] != '/') || strings.Contains(ref[i+len("Organization/"):], "/") || len(ref) == i+len("Organization/") {
		return ""
	}
	return ref
}

// nearKey is the key near-duplicates share, and false for a document that never clusters.
func (t Traits) nearKey() (string, bool) {
	if t.Person == "" || t.TypeCode == "" || t.Date.IsZero() {
		return "", false
	}
	org := "org:" + t.AuthorOrg
	if t.AuthorOrg == "" {
		if t.MemberID == "" {
			return "", false // a patient's own upload
		}
		org = "member:" + t.MemberID
	}
	return strings.Join([]string{t.Person, t.TypeCode, org, t.Date.UTC().Format(time.DateOnly)}, "\x00"), true
}

// ClusterCopy is one document of a Cluster with the content it holds.
type ClusterCopy struct {
	Copy
	Key         string // the content's SHA-256, hex
	Size        int64
	ContentType string
	Traits      Traits
}

// Cluster is one entry of a document list: a document and every near or exact duplicate of
// it among the listed ones. Copies[0] is the primary, the one the entry shows.
type Cluster struct {
	Copies []ClusterCopy
}

// Primary returns the copy the list shows for c.
func (c Cluster) Primary() ClusterCopy { return c.Copies[0] }

// Documents returns the number of distinct documents in c (a document with two contents
// counts once).
func (c Cluster) Documents() int {
	seen := map[string]bool{}
	for _, cp := range c.Copies {
		seen[cp.DocumentID] = true
	}
	return len(seen)
}

// Members returns the distinct members that sent a copy, in the order of Copies.
func (c Cluster) Members() []string {
	var ms []string
	for _, cp := range c.Copies {
		if cp.MemberID != "" && !slices.Contains(ms, cp.MemberID) {
			ms = append(ms, cp.MemberID)
		}
	}
	return ms
}

// Summary describes the copies for a list view, e.g. "3 copies from 2 organizations".
func (c Cluster) Summary() string { return summary(c.Documents(), len(c.Members())) }

// ClusterListings groups listings (one per distinct content, from Group) into clusters. Two
// listings share a cluster when they share a document (of the same person), or when a current document of each
// has the same near-duplicate key: the same person, type, author organization (the sending
// member when none is named) and clinical day in UTC. Documents that are superseded or
// entered in error never join a cluster by key (they keep their own lifecycle display),
// though an exact duplicate of a current document stays with it, as in Group. A document
// without traits clusters only with its exact duplicates.
//
// The primary of a cluster is chosen in this order: a current copy; a copy the author
// organization sent itself; the latest clinical date; the latest received; the smallest
// document ID. Clusters are ordered by their primary's clinical date, newest first (none
// last), then by the primary's document ID, so the result depends only on its input.
//
// It authorizes nothing and reads nothing: pass only what the viewer may see (after the
// consent filter), so a hidden copy can move neither a count nor the primary.
func ClusterListings(listings []Listing, traits map[string]Traits) []Cluster {
	// Identical bytes of two persons are one object, but never one entry: split each
	// listing by the person its copies are about.
	var ls []Listing
	for _, l := range listings {
		first := len(ls)
		for _, cp := range l.Copies {
			p := traits[cp.DocumentID].Person
			i := slices.IndexFunc(ls[first:], func(u Listing) bool { return traits[u.Copies[0].DocumentID].Person == p })
			if i < 0 {
				ls = append(ls, Listing{Key: l.Key, Size: l.Size, ContentType: l.ContentType})
				i = len(ls) - 1 - first
			}
			ls[first+i].Copies = append(ls[first+i].Copies, cp)
		}
	}
	parent := make([]int, len(ls))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		if parent[i] != i {
			parent[i] = find(parent[i])
		}
		return parent[i]
	}
	union := func(i, j int) {
		if ri, rj := find(i), find(j); ri != rj {
			parent[max(ri, rj)] = min(ri, rj)
		}
	}
	byKey, byDoc := map[string]int{}, map[string]int{}
	for i, l := range ls {
		for _, cp := range l.Copies {
			if j, ok := byDoc[cp.DocumentID]; ok {
				union(i, j)
			} else {
				byDoc[cp.DocumentID] = i
			}
			if cp.Status != "current" {
				continue
			}
			if k, ok := traits[cp.DocumentID].nearKey(); ok {
				if j, seen := byKey[k]; seen {
					union(i, j)
				} else {
					byKey[k] = i
				}
			}
		}
	}
	groups := map[int]*Cluster{}
	var roots []int
	for i, l := range ls {
		r := find(i)
		c := groups[r]
		if c == nil {
			c = &Cluster{}
			groups[r] = c
			roots = append(roots, r)
		}
		for _, cp := range l.Copies {
			c.Copies = append(c.Copies, ClusterCopy{Copy: cp, Key: l.Key, Size: l.Size, ContentType: l.ContentType, Traits: traits[cp.DocumentID]})
		}
	}
	out := make([]Cluster, 0, len(roots))
	for _, r := range roots {
		c := groups[r]
		slices.SortFunc(c.Copies, primaryFirst)
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Cluster) int {
		pa, pb := a.Primary(), b.Primary()
		if c := pb.Traits.Date.Compare(pa.Traits.Date); c != 0 {
			return c // newest first; a zero date is oldest, so last
		}
		return cmp.Or(cmp.Compare(pa.DocumentID, pb.DocumentID), cmp.Compare(pa.Key, pb.Key))
	})
	return out
}

// primaryFirst orders the copies of a cluster, the one to show first.
func primaryFirst(a, b ClusterCopy) int {
	if ac, bc := a.Status == "current", b.Status == "current"; ac != bc {
		if ac {
			return -1
		}
		return 1
	}
	if a.Traits.FromAuthor != b.Traits.FromAuthor {
		if a.Traits.FromAuthor {
			return -1
		}
		return 1
	}
	return cmp.Or(
		b.Traits.Date.Compare(a.Traits.Date),
		b.Received.Compare(a.Received),
		cmp.Compare(a.DocumentID, b.DocumentID),
		cmp.Compare(a.Key, b.Key),
		cmp.Compare(a.BinaryID, b.BinaryID),
	)
}
