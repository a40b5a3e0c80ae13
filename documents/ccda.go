package documents

import (
	"bytes"
	"encoding/xml"
	"html/template"
	"io"
	"strings"

	"github.com/concord-hie/concord/internal/errs"
)

// MaxCCDABytes bounds the C-CDA documents RenderCCDA reads.
const MaxCCDABytes = 16 << 20

// CCDAView is a C-CDA document reduced to what a reader needs: a patient-free header and
// the sections with their narrative. Every string is plain text; the template escapes it.
type CCDAView struct {
	Title     string
	Date      string // effectiveTime as sent (HL7 TS, e.g. 20240131)
	Author    string // the authoring organization or person's name
	Custodian string // the custodian organization's name
	Sections  []CCDASection
}

// CCDASection is one section: a title, paragraphs, lists and tables from its narrative.
type CCDASection struct {
	Title      string
	Paragraphs []string
	Lists      [][]string
	Tables     []CCDATable
	Sections   []CCDASection // nested sections
}

// CCDATable is a narrative table.
type CCDATable struct {
	Head []string
	Rows [][]string
}

// The parts of the CDA R2 schema the view reads (namespace urn:hl7-org:v3).
type cdaDoc struct {
	Title         string      `xml:"title"`
	EffectiveTime cdaTS       `xml:"effectiveTime"`
	Author        []cdaAuthor `xml:"author"`
	Custodian     struct {
		Org cdaNamed `xml:"assignedCustodian>representedCustodianOrganization"`
	} `xml:"custodian"`
	Components []cdaComponent `xml:"component>structuredBody>component"`
}

type cdaTS struct {
	Value string `xml:"value,attr"`
}

type cdaNamed struct {
	Name []cdaText `xml:"name"`
}

type cdaText struct {
	Inner string `xml:",innerxml"`
}

type cdaAuthor struct {
	Person cdaNamed `xml:"assignedAuthor>assignedPerson"`
	Org    cdaNamed `xml:"assignedAuthor>representedOrganization"`
}

type cdaComponent struct {
	Section cdaSection `xml:"section"`
}

type cdaSection struct {
	Title      string         `xml:"title"`
	Text       cdaNarrative   `xml:"text"`
	Components []cdaComponent `xml:"component"`
}

type cdaNarrative struct {
	Paragraphs []cdaText  `xml:"paragraph"`
	Contents   []cdaText  `xml:"content"`
	Lists      []cdaList  `xml:"list"`
	Tables     []cdaTable `xml:"table"`
	Chars      string     `xml:",chardata"`
}

type cdaList struct {
	Items []cdaText `xml:"item"`
}

type cdaTable struct {
	Head []cdaRow `xml:"thead>tr"`
	Body []cdaRow `xml:"tbody>tr"`
	Rows []cdaRow `xml:"tr"`
}

type cdaRow struct {
	Cells []cdaText `xml:",any"`
}

// ParseCCDA reads a C-CDA document into a view. It refuses any DTD (<!DOCTYPE, hence every
// entity declaration, external or nested) before parsing, reads at most MaxCCDABytes, and
// uses encoding/xml, which fetches nothing. Errors are errs.Invalid (or errs.TooLarge).
func ParseCCDA(r io.Reader) (CCDAView, error) {
	const op = "documents.ParseCCDA"
	b, err := io.ReadAll(io.LimitReader(r, MaxCCDABytes+1))
	if err != nil {
		return CCDAView{}, errs.E(op, errs.Invalid, "could not read the document", err)
	}
	if len(b) > MaxCCDABytes {
		return CCDAView{}, errs.E(op, errs.TooLarge, "the C-CDA document is too large")
	}
	if bytes.Contains(bytes.ToUpper(b), []byte("<!DOCTYPE")) || bytes.Contains(b, []byte("<!ENTITY")) {
		return CCDAView{}, errs.E(op, errs.Invalid, "C-CDA documents with a DTD or entity declarations are refused")
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	dec.Entity = nil // only the five predefined entities
	var doc cdaDoc
	var start xml.StartElement
	for {
		tok, err := dec.Token()
		if err != nil {
			return CCDAView{}, errs.E(op, errs.Invalid, "not a C-CDA document", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			start = se
			break
		}
	}
	if start.Name.Local != "ClinicalDocument" {
		return CCDAView{}, errs.E(op, errs.Invalid, "not a C-CDA ClinicalDocument")
	}
	if err := dec.DecodeElement(&doc, &start); err != nil {
		return CCDAView{}, errs.E(op, errs.Invalid, "malformed C-CDA document", err)
	}
	v := CCDAView{Title: clean(doc.Title), Date: doc.EffectiveTime.Value, Custodian: names(doc.Custodian.Org)}
	for _, a := range doc.Author {
		if n := names(a.Org); n != "" && v.Author == "" {
			v.Author = n
		}
	}
	if v.Author == "" && len(doc.Author) > 0 {
		v.Author = names(doc.Author[0].Person)
	}
	for _, c := range doc.Components {
		v.Sections = append(v.Sections, section(c.Section, 0))
	}
	return v, nil
}

func section(s cdaSection, depth int) CCDASection {
	out := CCDASection{Title: clean(s.Title)}
	if t := clean(s.Text.Chars); t != "" {
		out.Paragraphs = append(out.Paragraphs, t)
	}
	for _, p := range append(s.Text.Paragraphs, s.Text.Contents...) {
		if t := text(p); t != "" {
			out.Paragraphs = append(out.Paragraphs, t)
		}
	}
	for _, l := range s.Text.Lists {
		var items []string
		for _, it := range l.Items {
			items = append(items, text(it))
		}
		out.Lists = append(out.Lists, items)
	}
	for _, t := range s.Text.Tables {
		var tb CCDATable
		for _, r := range t.Head {
			for _, c := range r.Cells {
				tb.Head = append(tb.Head, text(c))
			}
		}
		for _, r := range append(t.Body, t.Rows...) {
			var row []string
			for _, c := range r.Cells {
				row = append(row, text(c))
			}
			tb.Rows = append(tb.Rows, row)
		}
		out.Tables = append(out.Tables, tb)
	}
	if depth < 4 {
		for _, c := range s.Components {
			out.Sections = append(out.Sections, section(c.Section, depth+1))
		}
	}
	return out
}

// text flattens a narrative element's inner XML to its character data.
func text(t cdaText) string {
	dec := xml.NewDecoder(strings.NewReader("<x>" + t.Inner + "</x>"))
	dec.Strict = true
	var b strings.Builder
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch v := tok.(type) {
		case xml.CharData:
			b.Write(v)
		case xml.StartElement:
			if v.Name.Local == "br" || v.Name.Local == "td" || v.Name.Local == "th" {
				b.WriteByte(' ')
			}
		}
	}
	return clean(b.String())
}

func names(n cdaNamed) string {
	var parts []string
	for _, t := range n.Name {
		if s := text(t); s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, ", ")
}

func clean(s string) string { return strings.Join(strings.Fields(s), " ") }

var ccdaTemplate = template.Must(template.New("ccda").Parse(`<article class="ccda">
<header><h2>{{.Title}}</h2><dl>{{with .Date}}<dt>Date</dt><dd>{{.}}</dd>{{end}}{{with .Author}}<dt>Author</dt><dd>{{.}}</dd>{{end}}{{with .Custodian}}<dt>Custodian</dt><dd>{{.}}</dd>{{end}}</dl></header>
{{range .Sections}}{{template "section" .}}{{end}}</article>
{{define "section"}}<section><h3>{{.Title}}</h3>{{range .Paragraphs}}<p>{{.}}</p>{{end}}{{range .Lists}}<ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}{{range .Tables}}<table>{{if .Head}}<thead><tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr></thead>{{end}}<tbody>{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>{{end}}</tbody></table>{{end}}{{range .Sections}}{{template "section" .}}{{end}}</section>{{end}}`))

// RenderCCDA parses a C-CDA document (see ParseCCDA) and renders it as an HTML fragment to
// sit under a page's own h1: the header (title as h2, date, author, custodian; no patient
// demographics), then each section (h3) with its paragraphs, lists and tables. Everything from the document is escaped text; no
// markup, style or link from the document survives.
func RenderCCDA(r io.Reader) (template.HTML, error) {
	v, err := ParseCCDA(r)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := ccdaTemplate.Execute(&b, v); err != nil {
		return "", errs.E("documents.RenderCCDA", errs.Internal, err)
	}
	return template.HTML(b.String()), nil // #nosec: produced by html/template from escaped text
}
