package consent

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"time"
)

// CacheKey returns the key under which a decision for req may be cached, given the
// consent versions (Store.Versions): the patient's, bumped in the same transaction as
// every save of their directives, and the regional policy version, bumped by every save
// of a default policy, so either change makes every older key unreachable. The key holds
// the person ID and both versions in clear, for prefix deletion and debugging, and a SHA-256 of every other
// request field Decide reads, except At (see ValidUntil). Labels and categories are
// sorted, so their order does not split the cache.
//
// ok is false for requests that must not be cached: break-the-glass (each use is a
// separate, reviewed event) and requests Decide would reject as invalid.
func CacheKey(person string, v Versions, req Request) (key string, ok bool) {
	if req.Purpose == PurposeBreakGlass || req.BreakGlass != nil || !KnownPurpose(req.Purpose) || req.PersonID == "" || req.PersonID != person {
		return "", false
	}
	h := sha256.New()
	field := func(s string) {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	list := func(xs []string) {
		s := slices.Clone(xs)
		slices.Sort(s)
		s = slices.Compact(s)
		field(strconv.Itoa(len(s)))
		for _, x := range s {
			field(x)
		}
	}
	field(req.Actor)
	field(req.ActorRole)
	field(req.Org)
	field(req.Purpose)
	field(req.Custodian)
	field(req.Class.ResourceType)
	list(req.Class.Categories)
	list(req.Labels)
	return "consent:v1:" + person + ":" + strconv.FormatInt(v.Person, 10) + ":" + strconv.FormatInt(v.Policy, 10) + ":" +
		hex.EncodeToString(h.Sum(nil)), true
}

// ValidUntil returns the first instant after at when a decision made at at from dirs
// could change with time alone: the next start or end of any directive's or
// provision's period (an end is inclusive, so the decision changes just after it).
// A cached decision may be reused for requests with At before the returned time. The
// zero time means no boundary lies ahead.
func ValidUntil(dirs []Directive, at time.Time) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if t.After(at) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	var walk func(p *Provision)
	walk = func(p *Provision) {
		if !p.Period.Start.IsZero() {
			consider(p.Period.Start)
		}
		if !p.Period.End.IsZero() {
			consider(p.Period.End.Add(time.Nanosecond))
		}
		for i := range p.Provisions {
			walk(&p.Provisions[i])
		}
	}
	for i := range dirs {
		walk(&dirs[i].Provision)
	}
	return next
}
