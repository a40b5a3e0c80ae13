package consent

import "time"

// Version is one stored version of a directive with the transaction time during which
// it was the current version: from ValidFrom (inclusive) until ValidTo (exclusive; zero
// while it is still current).
type Version struct {
	Directive Directive
	ValidFrom time.Time
	ValidTo   time.Time
}

// CurrentAt reports whether v was the stored version at transaction time t.
func (v Version) CurrentAt(t time.Time) bool {
	return !t.Before(v.ValidFrom) && (v.ValidTo.IsZero() || t.Before(v.ValidTo))
}

// InForce returns the directives as they were stored at transaction time t: for each
// directive ID, the version current at t. If overlapping rows make several versions of
// one ID current, the highest Version wins. A directive created after t, or deleted
// before it, is absent. The result is in no particular order (Decide does not care).
func InForce(versions []Version, t time.Time) []Directive {
	idx := make(map[DirectiveID]int, len(versions))
	var out []Directive
	for i := range versions {
		v := &versions[i]
		if !v.CurrentAt(t) {
			continue
		}
		if j, ok := idx[v.Directive.ID]; ok {
			if v.Directive.Version > out[j].Version {
				out[j] = v.Directive
			}
			continue
		}
		idx[v.Directive.ID] = len(out)
		out = append(out, v.Directive)
	}
	return out
}

// DecideAsOf re-evaluates req as it would have been decided at req.At, from the
// directive versions (the patient's and the default policies') stored at that time:
// "could Clinic B see this patient's labs on 3 March?".
func DecideAsOf(versions []Version, req Request) Decision {
	return Decide(InForce(versions, req.At), req)
}
