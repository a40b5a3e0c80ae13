package consent

import (
	"strconv"
	"strings"
	"time"
)

// MaxDepth is the deepest provision nesting Decide evaluates; ParseConsent and
// Directive.Validate reject deeper trees, and Decide treats a provision whose exceptions
// go deeper as a deny (fail closed).
const MaxDepth = 8

// Decision is the answer to a Request. The zero value denies (Reason NoDirective).
type Decision struct {
	Allow  bool
	Reason Reason
	// By is the directive that decided; for BreakGlassOverride it is the deny that was
	// overridden or else the directive that would have permitted, if any. Zero when none did.
	By      DirectiveID
	Version int // By's version
	// Provision is the path of the deciding provision in By, e.g. "provision.provision[1]".
	Provision string
	// Explanation is one or two plain-language sentences, with no PHI, shown alike to the
	// patient and the officer. It names organizations generically; Explain renders it
	// with display names.
	Explanation string
	// Exception is the information-blocking exception a denial relies on ("" on allow).
	Exception string

	why explainParams
}

// Decide reports whether req may be granted under dirs, the patient's directives and
// the regional default policies together. It does no I/O and reads no clock (req.At);
// the order of dirs does not matter. With no applicable directive it denies; any
// applicable deny wins over any permit; see the package documentation for the rules on
// labels, 42 CFR Part 2 and break-the-glass. A malformed request is denied with
// InvalidRequest.
func Decide(dirs []Directive, req Request) Decision {
	if !KnownPurpose(req.Purpose) || req.PersonID == "" || req.At.IsZero() {
		return decision(InvalidRequest, nil, &req)
	}
	e := evaluator{req: &req, reqMask: labelMask(req.Labels)}
	e.btg = req.Purpose == PurposeBreakGlass
	if e.btg && !req.BreakGlass.ValidAt(req.At) {
		return decision(BreakGlassInvalid, nil, &req)
	}
	for i := range dirs {
		e.directive(&dirs[i])
	}
	if e.btg {
		// Every allowed BTG request is a break-the-glass use (reviewed, notified), even
		// where a directive would have permitted it anyway.
		switch {
		case e.btgDeny.ok:
			return decision(denyReason(e.btgDeny.d), &e.btgDeny, &req)
		case e.deny.ok:
			return decision(BreakGlassOverride, &e.deny, &req)
		case e.permit.ok:
			return decision(BreakGlassOverride, &e.permit, &req)
		default:
			return decision(BreakGlassOverride, nil, &req)
		}
	}
	switch {
	case e.deny.ok:
		return decision(denyReason(e.deny.d), &e.deny, &req)
	case e.permit.ok:
		return decision(Permitted, &e.permit, &req)
	case e.part2Fail.ok:
		return decision(Part2ConsentRequired, &e.part2Fail, &req)
	case e.labelFail.ok:
		return decision(LabelNotPermitted, &e.labelFail, &req)
	case e.lapsed.ok:
		return decision(e.lapsed.reason, &e.lapsed, &req)
	}
	return decision(NoDirective, nil, &req)
}

func denyReason(d *Directive) Reason {
	if d.Kind == KindDefault {
		return DeniedByPolicy
	}
	return Denied
}

// KnownPurpose reports whether p is a purpose of use Concord accepts.
func KnownPurpose(p string) bool {
	switch p {
	case PurposeTreatment, PurposeEmergencyTreatment, PurposePayment, PurposeOperations,
		PurposePublicHealth, PurposePatientRequest, PurposeBreakGlass:
		return true
	}
	return false
}

// hit is a candidate deciding provision.
type hit struct {
	ok      bool
	d       *Directive
	p       *Provision
	depth   int
	path    [MaxDepth]uint16
	reason  Reason // lapsed hits: Expired or Inactive
	missing uint16 // label hits: gating labels not released
}

// before reports whether candidate (d, path) sorts before h: patients' directives before
// default policies, then by ID, newer version, and provision path. The order is total,
// so the chosen hit does not depend on the order of the directives.
func (h *hit) before(d *Directive, path []uint16) bool {
	if !h.ok {
		return true
	}
	if d.Kind != h.d.Kind {
		return d.Kind == KindPatient
	}
	if d.ID != h.d.ID {
		return d.ID < h.d.ID
	}
	if d.Version != h.d.Version {
		return d.Version > h.d.Version
	}
	hp := h.path[:h.depth]
	for i := 0; i < len(path) && i < len(hp); i++ {
		if path[i] != hp[i] {
			return path[i] < hp[i]
		}
	}
	return len(path) < len(hp)
}

func (h *hit) offer(d *Directive, p *Provision, path []uint16) {
	if h.before(d, path) {
		h.ok, h.d, h.p, h.depth = true, d, p, copy(h.path[:], path)
	}
}

type evaluator struct {
	req     *Request
	reqMask uint16
	btg     bool
	path    [MaxDepth]uint16

	deny, btgDeny, permit, labelFail, part2Fail, lapsed hit
}

func (e *evaluator) directive(d *Directive) {
	if d.Kind == KindPatient && d.PersonID != e.req.PersonID && d.AppliesTo != e.req.PersonID {
		return
	}
	root := &d.Provision
	typ := d.rootType()
	if d.Status != StatusActive || !root.Period.Contains(e.req.At) {
		// Remember a lapsed directive that would have permitted, to explain the denial.
		if typ == Permit {
			var r Reason
			switch {
			case d.Status != StatusActive:
				r = Inactive
			case !root.Period.End.IsZero() && e.req.At.After(root.Period.End):
				r = Expired
			default:
				return // not yet in force
			}
			if _, ok := e.matches(root, typ, true); ok && e.lapsed.before(d, nil) {
				e.lapsed.offer(d, root, nil)
				e.lapsed.reason = r
			}
		}
		return
	}
	named, ok := e.matches(root, typ, false)
	if !ok {
		return
	}
	e.walk(d, root, typ, 0, labelMask(root.SecurityLabels), named, len(root.Purposes) > 0)
}

// walk descends from p, which matched at depth with effective type typ. labels are the
// gating labels named on the path, named says whether a reference actor on the path
// matched the requester, purposed whether a provision on the path named purposes.
func (e *evaluator) walk(d *Directive, p *Provision, typ ProvisionType, depth int, labels uint16, named, purposed bool) {
	child := false
	for i := range p.Provisions {
		c := &p.Provisions[i]
		ct := c.Type
		if ct == TypeUnset {
			ct = typ.opposite()
		}
		cn, ok := e.matches(c, ct, false)
		if !ok {
			continue
		}
		child = true
		if depth+1 >= MaxDepth {
			// Too deep to evaluate: fail closed.
			e.deny.offer(d, p, e.path[:depth])
			continue
		}
		e.path[depth] = uint16(i)
		e.walk(d, c, ct, depth+1, labels|labelMask(c.SecurityLabels), named || cn, purposed || len(c.Purposes) > 0)
	}
	if child {
		return
	}
	path := e.path[:depth]
	if typ == Deny {
		e.deny.offer(d, p, path)
		if e.btg && purposed {
			e.btgDeny.offer(d, p, path)
		}
		return
	}
	if missing := e.reqMask &^ labels; missing != 0 {
		if e.labelFail.before(d, path) {
			e.labelFail.offer(d, p, path)
			e.labelFail.missing = missing
		}
		return
	}
	if e.reqMask&labelBit(LabelPart2) != 0 && !(d.Kind == KindPatient && named) &&
		!(e.req.Purpose == PurposePatientRequest && e.req.ActorRole == RolePatient) {
		e.part2Fail.offer(d, p, path)
		return
	}
	e.permit.offer(d, p, path)
}

// matches reports whether provision p (effective type typ) applies to the request, and
// whether one of its reference actors matched the requester.
func (e *evaluator) matches(p *Provision, typ ProvisionType, skipPeriod bool) (named, ok bool) {
	r := e.req
	if !skipPeriod && !p.Period.Contains(r.At) {
		return false, false
	}
	if len(p.Actions) > 0 && !anyIn(p.Actions, "access", "use", "disclose") {
		return false, false
	}
	if len(p.Purposes) > 0 {
		if !contains(p.Purposes, r.Purpose) {
			return false, false
		}
	} else if typ == Deny && r.Purpose == PurposePatientRequest {
		// A deny that names no purpose does not take away the right of access.
		return false, false
	}
	if len(p.Actors) > 0 {
		if named, ok = e.actorsMatch(p.Actors, typ); !ok {
			return false, false
		}
	}
	if len(p.Classes) > 0 && !classesMatch(p.Classes, &r.Class, typ) {
		return false, false
	}
	// A deny of a label covers the more specific codes of it (labelParents), as a permit's
	// release of it does: a deny of ETH withholds an item labelled ETHUD.
	if typ == Deny && len(p.SecurityLabels) > 0 && labelMask(p.SecurityLabels)&e.reqMask == 0 {
		return false, false
	}
	return named, true
}

// actorsMatch checks the recipient actors (any must match the requester) and the
// custodian actors (any must match the item's custodian) separately.
func (e *evaluator) actorsMatch(actors []Actor, typ ProvisionType) (named, ok bool) {
	r := e.req
	var hasRecip, recipOK, hasCust, custOK bool
	for i := range actors {
		a := &actors[i]
		if a.isCustodian() {
			hasCust = true
			if r.Custodian == "" {
				custOK = custOK || typ == Deny
			} else if isOrgRef(a.Reference, r.Custodian) {
				custOK = true
			}
			continue
		}
		hasRecip = true
		if a.Reference == "" {
			if a.Role != "" && a.Role == r.ActorRole {
				recipOK = true
			}
		} else if (r.Actor != "" && a.Reference == r.Actor) || isOrgRef(a.Reference, r.Org) {
			recipOK, named = true, true
		}
	}
	return named, (!hasRecip || recipOK) && (!hasCust || custOK)
}

func isOrgRef(ref, org string) bool {
	const pfx = "Organization/"
	return org != "" && len(ref) == len(pfx)+len(org) && strings.HasPrefix(ref, pfx) && ref[len(pfx):] == org
}

func classesMatch(cs []Class, item *Class, typ ProvisionType) bool {
	for i := range cs {
		c := &cs[i]
		if c.ResourceType != "" {
			if item.ResourceType == "" {
				if typ != Deny {
					continue
				}
			} else if c.ResourceType != item.ResourceType {
				continue
			}
		}
		if len(c.Categories) > 0 && !anyShared(c.Categories, item.Categories) {
			continue
		}
		return true
	}
	return false
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func anyIn(xs []string, ys ...string) bool {
	for _, y := range ys {
		if contains(xs, y) {
			return true
		}
	}
	return false
}

func anyShared(xs, ys []string) bool {
	for _, x := range xs {
		if contains(ys, x) {
			return true
		}
	}
	return false
}

// decision builds the Decision for reason r decided by h (nil: none).
func decision(r Reason, h *hit, req *Request) Decision {
	d := Decision{Allow: r.Allows(), Reason: r, Exception: r.Exception()}
	var dir *Directive
	var missing uint16
	if h != nil && h.ok {
		dir = h.d
		d.By, d.Version = h.d.ID, h.d.Version
		d.Provision = provisionPath(h.path[:h.depth])
		missing = h.missing
	}
	d.why = newExplainParams(r, dir, req, missing)
	d.Explanation = d.why.render(nil)
	return d
}

// provisionPath renders a path like "provision.provision[1].provision[0]".
func provisionPath(path []uint16) string {
	if len(path) == 0 {
		return "provision"
	}
	var b strings.Builder
	b.Grow(len("provision") + len(path)*len(".provision[00]"))
	b.WriteString("provision")
	for _, i := range path {
		b.WriteString(".provision[")
		b.WriteString(strconv.Itoa(int(i)))
		b.WriteByte(']')
	}
	return b.String()
}

// ValidAt reports whether b is a usable break-the-glass declaration at t: it exists,
// has a known reason code and a text, and t lies in [Start, Expires).
func (b *BreakGlass) ValidAt(t time.Time) bool {
	return b != nil && KnownBreakGlassReason(b.ReasonCode) && strings.TrimSpace(b.Text) != "" &&
		!b.Start.IsZero() && !t.Before(b.Start) && t.Before(b.Expires)
}
