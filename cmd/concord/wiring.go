package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/exchange"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/portal"
	"github.com/concord-hie/concord/records"
)

// consentDirectives stores the regional default policies that were never saved, then
// returns the store-backed directive source behind the Redis cache: a saved directive is
// in force for the next request, Redis down falls back to PostgreSQL, and PostgreSQL down
// is a 503.
func (m *Main) consentDirectives(ctx context.Context) (*consent.Cache, error) {
	cs := consent.NewStore()
	n, err := records.EnsureDefaultPolicies(ctx, m.pool, cs, consent.PolicyConfig{})
	if err != nil {
		return nil, fmt.Errorf("consent default policies: %v", errs.MessageOf(err))
	}
	if n > 0 {
		m.log.Info("regional default consent policies stored", "count", n)
	}
	return m.consentCache(records.NewStoreDirectives(m.pool, cs, 2*time.Second, nil)), nil
}

// consentCache returns src behind the Redis consent cache and keeps it in m.consentCaches.
func (m *Main) consentCache(src consent.VersionedSource) *consent.Cache {
	c := consent.NewCache(src, m.redis, consent.CacheOptions{Prefix: m.cfg.RedisPrefix, Logger: m.log})
	m.consentCaches = append(m.consentCaches, c)
	return c
}

// consentAPI returns the exchange's consent routes (FHIR Consent, $break-glass,
// $consent-preview) over the same stores; buildHTTP mounts them with Register. Its
// cache shares Redis entries with the records' (both are keyed by consent versions).
func (m *Main) consentAPI() *exchange.ConsentAPI {
	cs := consent.NewStore()
	src := records.NewStoreDirectives(m.pool, cs, 2*time.Second, nil)
	return exchange.NewConsentAPI(m.exchange, exchange.ConsentDeps{Store: cs, Directives: src,
		Cache:      m.consentCache(src),
		BreakGlass: records.NewBreakGlassStore(m.pool), Policy: consent.BreakGlassPolicy{MaxDuration: m.cfg.BreakGlass}, Audit: m.audit})
}

// identity adapts the MPI's login enrolments to the portal.
type identity struct{ mpi *mpistore.Store }

func (i identity) PersonForLogin(ctx context.Context, issuer, subject string) (string, error) {
	p, err := i.mpi.PersonForLogin(ctx, issuer, subject)
	return string(p), err
}

// portalRecords serves the portal's pages from the enforcement point.
type portalRecords struct {
	rec *records.Service
	dir *directory.Store
}

func (p portalRecords) viewer(v portal.Viewer) records.Viewer {
	rv := records.Viewer{Actor: v.Actor, Org: v.Org, Role: string(v.Role), PersonID: v.PersonID, RequestID: v.RequestID, SourceIP: v.SourceIP}
	switch {
	case v.Role == portal.RolePatient, v.Role == portal.RoleProxy:
		rv.Purpose = consent.PurposePatientRequest
	case v.BreakGlass:
		rv.Purpose = consent.PurposeBreakGlass // records applies the declaration in force, or denies
	default:
		rv.Purpose = consent.PurposeTreatment
	}
	return rv
}

// Labs returns the person's laboratory Observations that v may see.
func (p portalRecords) Labs(ctx context.Context, v portal.Viewer, personID string) ([]portal.LabResult, error) {
	return p.labs(ctx, string(v.Role), v.Org, func(keep func(store.Stored) bool) ([]store.Stored, error) {
		return p.rec.Compartment(ctx, p.viewer(v), personID, "Observation", proxyKeep(v, keep), 1000)
	})
}

// memberNames maps member IDs to display names for the portal's "from" columns. A
// directory that cannot be read leaves the map empty: rows then show member IDs.
func (p portalRecords) memberNames(ctx context.Context) map[string]string {
	names := map[string]string{}
	if ms, err := p.dir.Members(ctx); err == nil {
		for _, m := range ms {
			names[m.ID] = m.Name
		}
	}
	return names
}

// proxyKeep narrows keep for a caregiver (portal.RoleProxy): items with a sensitive label
// (consent.Sensitive) are never candidates, so they are neither shown nor recorded as shown,
// unless the patient let this caregiver see them (Viewer.ProxySensitive; consent still
// decides, and 42 CFR Part 2 records need their own consent). Any other viewer's keep is
// returned as is.
func proxyKeep(v portal.Viewer, keep func(store.Stored) bool) func(store.Stored) bool {
	if v.Role != portal.RoleProxy || v.ProxySensitive {
		return keep
	}
	return func(st store.Stored) bool {
		var m struct {
			Meta struct {
				Security []fhir.Coding `json:"security"`
			} `json:"meta"`
		}
		if json.Unmarshal(st.Body, &m) != nil {
			return false
		}
		labels := make([]string, len(m.Meta.Security))
		for i, c := range m.Meta.Security {
			labels[i] = c.Code
		}
		return !consent.Sensitive(labels) && (keep == nil || keep(st))
	}
}

// SharedLabs returns the laboratory Observations that the holder of link may see: records.Shared
// decides them as consent role share and audits the use before returning.
func (p portalRecords) SharedLabs(ctx context.Context, v portal.Viewer, link portal.ShareLink) ([]portal.LabResult, error) {
	sh := records.Share{LinkID: link.ID, PersonID: link.PersonID, ResourceID: link.ResourceID, IncludeSensitive: link.IncludeSensitive,
		RequestID: v.RequestID, SourceIP: v.SourceIP}
	return p.labs(ctx, consent.RoleShare, "", func(keep func(store.Stored) bool) ([]store.Stored, error) {
		return p.rec.Shared(ctx, sh, "Observation", keep, 1000)
	})
}

// labs reads Observations through read with a filter that keeps laboratory results, and
// turns them into the portal's rows for a viewer of consent role role at member org ("" for
// none): a Part 2 record sent by another member is marked as disclosed (LabResult.Part2)
// unless the viewer is the patient.
func (p portalRecords) labs(ctx context.Context, role, org string, read func(keep func(store.Stored) bool) ([]store.Stored, error)) ([]portal.LabResult, error) {
	// Each Observation body is decoded once: the filter keeps the decoded labs for the rows.
	decoded := map[string]*observation{}
	keep := func(st store.Stored) bool {
		// Vital signs and the rest are told apart by a scan of the bytes (most of a
		// record's Observations); only laboratory results are decoded.
		if _, cats, ok := fhir.ConsentCodes(st.Body); !ok || !slices.Contains(cats, "laboratory") {
			return false
		}
		var o observation
		if json.Unmarshal(st.Body, &o) != nil || !o.isLab() {
			return false
		}
		decoded[st.ID] = &o
		return true
	}
	obs, err := read(keep)
	if err != nil {
		return nil, err
	}
	names := p.memberNames(ctx)
	out := make([]portal.LabResult, 0, len(obs))
	for _, st := range obs {
		r := labResult(st, decoded[st.ID], names[st.MemberID])
		r.Part2 = st.MemberID != org && consent.NeedsPart2Notice(decoded[st.ID].labels(), consent.Request{ActorRole: role})
		r.Sensitive = consent.Sensitive(decoded[st.ID].labels())
		out = append(out, r)
	}
	return out, nil
}

type codeable struct {
	Coding []struct {
		System  string `json:"system"`
		Code    string `json:"code"`
		Display string `json:"display"`
	} `json:"coding"`
	Text string `json:"text"`
}

type observation struct {
	Meta struct {
		Security []struct {
			Code string `json:"code"`
		} `json:"security"`
	} `json:"meta"`
	Status            string     `json:"status"`
	Category          []codeable `json:"category"`
	Code              codeable   `json:"code"`
	EffectiveDateTime string     `json:"effectiveDateTime"`
	Issued            string     `json:"issued"`
	ValueQuantity     *struct {
		Value json.Number `json:"value"`
		Unit  string      `json:"unit"`
		Code  string      `json:"code"`
	} `json:"valueQuantity"`
	ValueString    *string    `json:"valueString"`
	Interpretation []codeable `json:"interpretation"`
	ReferenceRange []struct {
		Low *struct {
			Value json.Number `json:"value"`
		} `json:"low"`
		High *struct {
			Value json.Number `json:"value"`
		} `json:"high"`
		Text string `json:"text"`
	} `json:"referenceRange"`
}

// labels returns the Observation's security label codes.
func (o *observation) labels() []string {
	out := make([]string, len(o.Meta.Security))
	for i, s := range o.Meta.Security {
		out[i] = s.Code
	}
	return out
}

// isLab reports whether the Observation is in the laboratory category.
func (o *observation) isLab() bool {
	for _, c := range o.Category {
		for _, cd := range c.Coding {
			if cd.Code == "laboratory" {
				return true
			}
		}
	}
	return false
}

func labResult(st store.Stored, o *observation, memberName string) portal.LabResult {
	r := portal.LabResult{ID: st.ID, Status: o.Status, SourceMember: st.MemberID, SourceMemberName: memberName, Display: o.Code.Text}
	for _, cd := range o.Code.Coding {
		if r.Code == "" || cd.System == "http://loinc.org" {
			r.Code = cd.Code
			if cd.Display != "" {
				r.Display = cd.Display
			}
		}
	}
	if o.ValueQuantity != nil {
		r.Value, r.Unit = o.ValueQuantity.Value.String(), o.ValueQuantity.Unit
		if r.Unit == "" {
			r.Unit = o.ValueQuantity.Code
		}
	} else if o.ValueString != nil {
		r.Value = *o.ValueString
	}
	for _, in := range o.Interpretation {
		for _, cd := range in.Coding {
			r.Flag = cd.Code
		}
	}
	for _, rr := range o.ReferenceRange {
		switch {
		case rr.Text != "":
			r.RefRange = rr.Text
		case rr.Low != nil && rr.High != nil:
			r.RefRange = rr.Low.Value.String() + "–" + rr.High.Value.String()
		case rr.High != nil:
			r.RefRange = "≤ " + rr.High.Value.String()
		case rr.Low != nil:
			r.RefRange = "≥ " + rr.Low.Value.String()
		}
	}
	eff := o.EffectiveDateTime
	if eff == "" {
		eff = o.Issued
	}
	if d, err := fhir.ParseDateTime(strings.TrimSpace(eff)); err == nil {
		r.Effective = d.Low
	}
	return r
}

// patientLookup finds a member's own patients for its clinicians (portal.PatientLookup):
// the MPI source record by MRN or Patient id, and the name and birth date from the
// member's own Patient, read through the enforcement point (an audited own-record read).
type patientLookup struct {
	portalRecords
	mpiStore *mpistore.Store
}

func (l patientLookup) ByMRN(ctx context.Context, v portal.Viewer, mrn string) (portal.OrgPatient, error) {
	srcs, err := l.mpiStore.SourcesOfMember(ctx, v.Org, mrn)
	if err != nil {
		return portal.OrgPatient{}, err
	}
	if len(srcs) == 0 {
		return portal.OrgPatient{}, errs.E("patientLookup.ByMRN", errs.NotFound, "no such patient")
	}
	return l.patient(ctx, v, srcs[0])
}

func (l patientLookup) ByID(ctx context.Context, v portal.Viewer, id string) (portal.OrgPatient, error) {
	src, err := l.mpiStore.SourceByPatient(ctx, nil, id)
	if err == nil && (v.Org == "" || src.MemberID != v.Org) {
		err = errs.E("patientLookup.ByID", errs.NotFound, "no such patient") // another member's: absent
	}
	if err != nil {
		return portal.OrgPatient{}, err
	}
	return l.patient(ctx, v, src)
}

func (l patientLookup) ByPerson(ctx context.Context, v portal.Viewer, personID string) (portal.OrgPatient, error) {
	srcs, err := l.mpiStore.Sources(ctx, mpistore.PersonID(personID))
	if err != nil {
		return portal.OrgPatient{}, err
	}
	for _, src := range srcs {
		if v.Org != "" && src.MemberID == v.Org {
			return l.patient(ctx, v, src)
		}
	}
	return portal.OrgPatient{}, errs.E("patientLookup.ByPerson", errs.NotFound, "no such patient")
}

// patient reads src's Patient through the enforcement point for its name and birth date.
func (l patientLookup) patient(ctx context.Context, v portal.Viewer, src mpistore.Source) (portal.OrgPatient, error) {
	st, err := l.rec.Read(ctx, l.viewer(v), "Patient", src.PatientID)
	if err != nil {
		return portal.OrgPatient{}, err
	}
	var p struct {
		Name []struct {
			Text   string   `json:"text"`
			Family string   `json:"family"`
			Given  []string `json:"given"`
		} `json:"name"`
		BirthDate string `json:"birthDate"`
	}
	_ = json.Unmarshal(st.Body, &p) // a stored Patient parses; a name is shown only if present
	name := "Name not recorded"
	if len(p.Name) > 0 {
		n := p.Name[0]
		if name = n.Text; name == "" {
			name = strings.TrimSpace(strings.Join(append(append([]string{}, n.Given...), n.Family), " "))
		}
	}
	return portal.OrgPatient{ID: src.PatientID, MRN: src.Value, PersonID: string(src.PersonID), Name: name, BirthDate: p.BirthDate}, nil
}
