package consent

import (
	"context"
	"strconv"

	"github.com/concord-hie/concord/internal/db"
)

// Release is one provision of a directive that releases gating labels: a provision whose
// effective type is permit, with the gating labels named on the path from the root to it
// (Decide releases a label only under a permit whose path names it).
type Release struct {
	// Path is the provision in FHIR terms ("Consent.provision.provision[0]").
	Path string
	// Labels are the gating labels the path names, in bit order (ETH, PSY, HIV, SDV, SEX,
	// R, V, 42CFRPart2).
	Labels []string
	// LabelPaths give, for each of Labels, the securityLabel element that names it first
	// on the path ("Consent.provision.securityLabel[2]").
	LabelPaths []string
	// Recipients are the recipient actor references on the path (custodians left out).
	Recipients []string
}

// Releases returns the provisions of d that release gating labels, in document order;
// none for a directive that is not active, since only active directives take part in
// decisions. A deny, and a permit whose path names no gating label, releases none.
func (d *Directive) Releases() []Release {
	if d.Status != StatusActive {
		return nil
	}
	var out []Release
	var walk func(p *Provision, typ ProvisionType, path string, mask uint16, labelPaths [labelCount]string, recips []string)
	walk = func(p *Provision, typ ProvisionType, path string, mask uint16, labelPaths [labelCount]string, recips []string) {
		for i, l := range p.SecurityLabels {
			b := labelBit(l)
			for j := range gatingLabels {
				if b == labelBit(gatingLabels[j]) && mask&b == 0 {
					labelPaths[j] = path + ".securityLabel[" + strconv.Itoa(i) + "]"
				}
			}
			mask |= b
		}
		for _, a := range p.Actors {
			if a.Reference != "" && !a.isCustodian() {
				recips = append(recips[:len(recips):len(recips)], a.Reference)
			}
		}
		if typ == Permit && mask != 0 {
			r := Release{Path: path, Labels: maskLabels(mask), Recipients: recips}
			for j, l := range gatingLabels {
				if mask&labelBit(l) != 0 {
					r.LabelPaths = append(r.LabelPaths, labelPaths[j])
				}
			}
			out = append(out, r)
		}
		for i := range p.Provisions {
			c := &p.Provisions[i]
			ct := c.Type
			if ct == TypeUnset {
				ct = typ.opposite()
			}
			walk(c, ct, path+".provision["+strconv.Itoa(i)+"]", mask, labelPaths, recips)
		}
	}
	walk(&d.Provision, d.rootType(), "Consent.provision", 0, [labelCount]string{}, nil)
	return out
}

// NamesOrg reports whether one of d's provisions names organization org as an actor,
// recipient or custodian ("Organization/{org}").
func (d *Directive) NamesOrg(org string) bool {
	var names func(p *Provision) bool
	names = func(p *Provision) bool {
		for _, a := range p.Actors {
			if isOrgRef(a.Reference, org) {
				return true
			}
		}
		for i := range p.Provisions {
			if names(&p.Provisions[i]) {
				return true
			}
		}
		return false
	}
	return names(&d.Provision)
}

// General reports whether d names no one (no actor reference: no organization,
// practitioner, related person or patient) and no security label in any of its
// provisions: a choice that applies to every member alike (a patient's plain opt-out)
// and, read by one member, says nothing about another member, a clinician or a sensitive
// category. Actors by role alone (clinicians, caregivers) name no one.
func (d *Directive) General() bool {
	var general func(p *Provision) bool
	general = func(p *Provision) bool {
		if len(p.SecurityLabels) > 0 {
			return false
		}
		for _, a := range p.Actors {
			if a.Reference != "" {
				return false
			}
		}
		for i := range p.Provisions {
			if !general(&p.Provisions[i]) {
				return false
			}
		}
		return true
	}
	return general(&d.Provision)
}

// FiledByAll is FiledBy for many directives in one query: the member that filed the
// current version of each id through the exchange. An id saved another way (portal,
// officer, defaults), or never stored, is left out of the map.
func (s *Store) FiledByAll(ctx context.Context, q db.Querier, ids []DirectiveID) (map[DirectiveID]string, error) {
	const op = "consent.Store.FiledByAll"
	out := make(map[DirectiveID]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = string(id)
	}
	rows, err := q.Query(ctx, `SELECT DISTINCT ON (directive_id) directive_id, filed_by_member FROM consent_directives
		WHERE directive_id = ANY($1) ORDER BY directive_id, version DESC`, keys)
	if err != nil {
		return nil, db.Map(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var member *string
		if err := rows.Scan(&id, &member); err != nil {
			return nil, db.Map(op, err)
		}
		if member != nil {
			out[DirectiveID(id)] = *member
		}
	}
	if err := rows.Err(); err != nil {
		return nil, db.Map(op, err)
	}
	return out, nil
}
