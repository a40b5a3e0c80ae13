package exchange

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/mpi"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

// RateLimiter is an in-process token bucket per client: each client may make Burst
// requests at once and PerSecond on average. Identity transactions ($match, PIXm) are
// rate-limited because they can enumerate people. Each replica counts on its own; a
// Redis-backed bucket shared by replicas is the planned replacement (stack.md: Redis holds
// rate limits).
type RateLimiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxBuckets bounds the limiter's memory; beyond it, buckets that have refilled are dropped.
const maxBuckets = 10000

// NewRateLimiter returns a limiter of perSecond requests per client on average with bursts
// of burst. now may be nil (time.Now).
func NewRateLimiter(perSecond float64, burst int, now func() time.Time) *RateLimiter {
	if now == nil {
		now = time.Now
	}
	return &RateLimiter{rate: perSecond, burst: float64(burst), now: now, buckets: map[string]*bucket{}}
}

// Allow takes a token from key's bucket. When it is empty it returns false and how long
// until the next token.
func (l *RateLimiter) Allow(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			for k, o := range l.buckets {
				if o.tokens+now.Sub(o.at).Seconds()*l.rate >= l.burst {
					delete(l.buckets, k)
				}
			}
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// limitIdentity applies the identity rate limit to the calling client.
func (s *Server) limitIdentity(c echo.Context) error {
	if s.IdentityLimiter == nil {
		return nil
	}
	ok, wait := s.IdentityLimiter.Allow(principal(c).ClientID)
	if !ok {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		return errs.E("exchange.limitIdentity", errs.RateLimited, "too many identity requests; slow down")
	}
	return nil
}

// MatchGradeURL is the extension on a $match entry's search element that grades the match.
const MatchGradeURL = "http://hl7.org/fhir/StructureDefinition/match-grade"

// Match grades (the match-grade extension's codes).
const (
	GradeCertain  = "certain"  // the engine would auto-link: at or above the link threshold, no guard, clear of the runner-up
	GradeProbable = "probable" // upper half of the review band, or above the link threshold but guarded or not clear
	GradePossible = "possible" // lower half of the review band
	// "certainly-not" (below the review band) is never returned: such a candidate is no
	// match, and answering it would only widen what $match can enumerate.
)

// defaultMatchCount is the number of matches answered when the request gives no count.
const defaultMatchCount = 10

type matchRequest struct {
	patient     []byte
	onlyCertain bool
	count       int
}

type parametersIn struct {
	Parameter []struct {
		Name         string          `json:"name"`
		Resource     json.RawMessage `json:"resource"`
		ValueBoolean *bool           `json:"valueBoolean"`
		ValueInteger *int            `json:"valueInteger"`
	} `json:"parameter"`
}

// parseMatch reads a $match body: Parameters{resource (a Patient, required, once),
// onlyCertainMatches, count} or a bare Patient.
func (s *Server) parseMatch(body []byte) (matchRequest, error) {
	const op = "exchange.parseMatch"
	res, err := fhir.Parse(body)
	if err != nil {
		return matchRequest{}, err
	}
	r := matchRequest{count: defaultMatchCount}
	switch res.ResourceType {
	case "Patient":
		r.patient = body
		return r, nil
	case "Parameters":
	default:
		return matchRequest{}, errs.E(op, errs.Invalid, "the body must be Parameters or a Patient")
	}
	var p parametersIn
	if err := json.Unmarshal(body, &p); err != nil {
		return matchRequest{}, errs.E(op, errs.Invalid, "malformed Parameters", err)
	}
	seen := map[string]bool{}
	for _, x := range p.Parameter {
		if seen[x.Name] {
			return matchRequest{}, errs.E(op, errs.Invalid, "a $match parameter is repeated")
		}
		seen[x.Name] = true
		switch x.Name {
		case "resource":
			var rt struct {
				ResourceType string `json:"resourceType"`
			}
			if len(x.Resource) == 0 || json.Unmarshal(x.Resource, &rt) != nil || rt.ResourceType != "Patient" {
				return matchRequest{}, errs.E(op, errs.Invalid, "the resource parameter must be a Patient")
			}
			r.patient = x.Resource
		case "onlyCertainMatches":
			if x.ValueBoolean == nil {
				return matchRequest{}, errs.E(op, errs.Invalid, "onlyCertainMatches must be a boolean")
			}
			r.onlyCertain = *x.ValueBoolean
		case "count":
			if x.ValueInteger == nil || *x.ValueInteger < 1 {
				return matchRequest{}, errs.E(op, errs.Invalid, "count must be a positive integer")
			}
			r.count = min(*x.ValueInteger, s.cfg.MaxCount)
		default:
			return matchRequest{}, errs.E(op, errs.Invalid, "unsupported $match parameter")
		}
	}
	if r.patient == nil {
		return matchRequest{}, errs.E(op, errs.Invalid, "the resource parameter (a Patient) is required")
	}
	return r, nil
}

// grade maps a scored candidate to its match-grade code; certain is whether it is certain
// among the persons the caller may see (Matcher.CertainAmong), not sc.Certain.
func grade(sc mpistore.Scored, certain bool) string {
	switch {
	case certain:
		return GradeCertain
	case sc.Upper:
		return GradeProbable
	}
	return GradePossible
}

// matchPatients handles POST [base]/Patient/$match (PDQm ITI-119). It scores the given
// Patient with the MPI engine against the persons that share a blocking key with it and
// answers a searchset of at most count Patients, best first. It never creates anything.
//
// search.score is the engine's posterior match probability of the edge to the Patient the
// entry returns (Matcher.ScoreSource), λ·2^w / (1 − λ + λ·2^w) for Fellegi–Sunter weight
// w and the model's prior λ (mpi.Model.Probability), rounded to 4 places: monotone in w,
// 0..1. It is of that record alone, never of the person's other records the caller may
// not see; entries stay in the order of the person's best edge. The grade follows the
// MPI bands: certain = auto-link, probable/possible = upper/lower half of the review band;
// candidates below the review band are not returned.
//
// Visibility goes through records.IdentityRelease: for each candidate person the caller
// gets its own member's Patient when it has one, otherwise (purpose TREAT, consent
// permitting) one other member's Patient; a person it may not see is skipped as if it did
// not match, and counts for nothing in the grades: certain is the best person the caller
// may see, when the engine would auto-link to it and no other person the caller may see
// is within the model's margin. Each disclosure is audited; a 42 CFR Part 2 Patient of
// another member carries the §2.32 notice as on a read, and the Bundle an outcome entry
// with it (not counted in total). onlyCertainMatches=true answers the single certain
// match, or nothing (decided before anything is disclosed).
func (s *Server) matchPatients(c echo.Context) error {
	const op = "exchange.matchPatients"
	if err := require(c, "Patient", 's'); err != nil {
		return err
	}
	if err := s.limitIdentity(c); err != nil {
		return err
	}
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	req, err := s.parseMatch(body)
	if err != nil {
		return err
	}
	rec, err := s.Matcher.Record(req.patient)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	scored, err := s.Matcher.Score(ctx, s.Pool, &rec)
	if err != nil {
		return errs.E(op, err)
	}
	set := fhir.SearchSet{Timestamp: s.Now()}
	v := viewer(c)
	query := func(p mpistore.PersonID) records.IdentityQuery {
		return records.IdentityQuery{Persons: []string{string(p)}, One: true, Reason: "match"}
	}
	visible := func(p mpistore.PersonID) (bool, error) {
		vis, err := s.Records.IdentityVisible(ctx, v, query(p))
		return err == nil && vis[0], err
	}
	part2 := false
	for i, sc := range scored {
		if len(set.Entries) >= req.count || sc.Band == mpi.NoLink {
			break
		}
		// Only the best person the caller may see can be certain, and only against the
		// others it may see (Matcher.CertainAmong): the grade says nothing of the rest.
		certain := false
		if len(set.Entries) == 0 {
			if req.onlyCertain {
				// Decide before disclosing: an uncertain best match is not handed out at all.
				if vis, err := visible(sc.Person); err != nil || !vis {
					if err != nil {
						return err
					}
					continue
				}
			}
			if certain, err = s.Matcher.CertainAmong(scored, i, visible); err != nil {
				return err
			}
		}
		if req.onlyCertain && !certain {
			break
		}
		got, err := s.Records.IdentityRelease(ctx, v, query(sc.Person))
		if err != nil {
			return err
		}
		if len(got.Patients[0]) == 0 {
			continue
		}
		st := got.Patients[0][0]
		var rel *records.Part2Release
		if r, ok := got.Part2Of(st); ok {
			rel, part2 = &r, true
		}
		body, err := discloseBody(st.Body, rel) // a Part 2 record carries the §2.32 notice (part2.go)
		if err != nil {
			return err
		}
		res, err := fhir.Parse(body)
		if err != nil {
			return errs.E(op, errs.Internal, err)
		}
		// The score is of this Patient's record alone: the person's best record may be one
		// the caller may not see.
		prob, ok := s.Matcher.EdgeProbability(sc, st.ID)
		if !ok {
			if prob, err = s.Matcher.ScoreSource(ctx, s.Pool, &rec, st.ID); err != nil {
				return errs.E(op, err)
			}
		}
		score := math.Round(prob*1e4) / 1e4
		ext, _ := json.Marshal(struct {
			URL       string `json:"url"`
			ValueCode string `json:"valueCode"`
		}{MatchGradeURL, grade(sc, certain)})
		set.Entries = append(set.Entries, fhir.SearchEntry{FullURL: s.FHIRBase() + "/Patient/" + st.ID, Resource: res,
			Mode: "match", Score: &score, Extensions: []json.RawMessage{ext}})
		if req.onlyCertain {
			break
		}
	}
	total := len(set.Entries)
	set.Total = &total
	if part2 {
		oo, err := fhir.Parse(part2Outcome())
		if err != nil {
			return errs.E(op, errs.Internal, err)
		}
		set.Entries = append(set.Entries, fhir.SearchEntry{Resource: oo, Mode: "outcome"})
	}
	out, err := set.JSON()
	if err != nil {
		return errs.E(op, err)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, mimeFHIR, out)
}
