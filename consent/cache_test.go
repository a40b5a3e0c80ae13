package consent_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

// memSource is an in-memory VersionedSource: directives and versions that the test
// changes, and counters of what the cache asked for. (The PostgreSQL source is tested in
// records with the cache in front of it.)
type memSource struct {
	mu       sync.Mutex
	dirs     []consent.Directive
	v        consent.Versions
	err      error
	currents int
}

func (m *memSource) InForce(context.Context, string, time.Time) ([]consent.Directive, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dirs, m.err
}

func (m *memSource) Versions(context.Context, string) (consent.Versions, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.v, m.err
}

func (m *memSource) Current(context.Context, string) ([]consent.Directive, consent.Versions, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.currents++
	return m.dirs, m.v, m.err
}

func (m *memSource) save(dirs []consent.Directive) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dirs = dirs
	m.v.Person++
}

const person = "0b6f2f8e-4f5e-4c59-9b7e-3f1d2a9c8e11"

func treatReq(at time.Time) consent.Request {
	return consent.Request{Actor: "c1", ActorRole: consent.RoleSystem, Org: "b", Purpose: consent.PurposeTreatment,
		PersonID: person, Class: consent.Class{ResourceType: "Observation", Categories: []string{"laboratory"}}, Custodian: "a", At: at}
}

func optOut(status consent.Status) consent.Directive {
	return consent.Directive{ID: "optout", Version: 1, PersonID: person, Kind: consent.KindPatient, PolicyRule: consent.OptOut,
		Status: status, DateTime: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		Provision: consent.Provision{Type: consent.Deny, Purposes: []string{consent.PurposeTreatment}}}
}

func TestCacheFollowsVersions(t *testing.T) {
	rdb, prefix := testkit.Redis(t)
	ctx := context.Background()
	src := &memSource{dirs: consent.DefaultPolicies(consent.PolicyConfig{}), v: consent.Versions{Policy: 1}}
	c := consent.NewCache(src, rdb, consent.CacheOptions{Prefix: prefix})
	decide := func() bool {
		t.Helper()
		now := time.Now()
		dirs, err := c.InForce(ctx, person, now)
		if err != nil {
			t.Fatal(err)
		}
		return consent.Decide(dirs, treatReq(now)).Allow
	}
	if !decide() || !decide() {
		t.Fatal("treatment under the regional default: denied")
	}
	// Another instance (empty memo) finds the entry in Redis.
	other := consent.NewCache(src, rdb, consent.CacheOptions{Prefix: prefix})
	if _, err := other.InForce(ctx, person, time.Now()); err != nil {
		t.Fatal(err)
	}
	if src.currents != 1 {
		t.Fatalf("source read %d times for three lookups; want 1 (then memo, then Redis)", src.currents)
	}
	if n, _ := rdb.Exists(ctx, c.Key(person, consent.Versions{Policy: 1})).Result(); n != 1 {
		t.Fatal("no entry under the current versions")
	}
	// Forget empties the memo: with the Redis entry gone too, the next lookup reads the source.
	c.Forget()
	rdb.Del(ctx, c.Key(person, consent.Versions{Policy: 1}))
	if !decide() || src.currents != 2 {
		t.Fatalf("after Forget and the Redis entry deleted: source read %d times, want 2", src.currents)
	}
	// A save bumps the version: the next call misses and sees the revoke.
	src.save(append(consent.DefaultPolicies(consent.PolicyConfig{}), optOut(consent.StatusActive)))
	if decide() {
		t.Fatal("permit after the revoke was saved (stale cache)")
	}
	src.save(append(consent.DefaultPolicies(consent.PolicyConfig{}), optOut(consent.StatusInactive)))
	if !decide() {
		t.Fatal("deny after the grant was saved (stale cache)")
	}
	// Round trip: what comes back from Redis decides exactly like the source's directives.
	dirs, _, err := c.Current(ctx, person)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range consent.StandardClasses() {
		r := treatReq(time.Now())
		r.Class, r.Labels = cl.Class, cl.Labels
		if got, want := consent.Decide(dirs, r), consent.Decide(src.dirs, r); got.Allow != want.Allow || got.Reason != want.Reason || got.By != want.By {
			t.Fatalf("class %s: cached %v/%v, source %v/%v", cl.Name, got.Allow, got.Reason, want.Allow, want.Reason)
		}
	}
	// A corrupt entry is ignored, never trusted.
	v, _ := src.Versions(ctx, person)
	rdb.Set(ctx, c.Key(person, v), "{not json", time.Minute)
	before := src.currents
	if dirs, err := consent.NewCache(src, rdb, consent.CacheOptions{Prefix: prefix}).InForce(ctx, person, time.Now()); err != nil || len(dirs) != 3 || src.currents != before+1 {
		t.Fatalf("corrupt entry: %d directives, %v, source reads %d; want the source's 3, read again", len(dirs), err, src.currents-before)
	}
}

func TestCacheFailsClosedAndSurvivesRedis(t *testing.T) {
	ctx := context.Background()
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	defer dead.Close()
	src := &memSource{dirs: consent.DefaultPolicies(consent.PolicyConfig{}), v: consent.Versions{Policy: 1}}
	c := consent.NewCache(src, dead, consent.CacheOptions{})
	if dirs, err := c.InForce(ctx, person, time.Now()); err != nil || len(dirs) != 2 {
		t.Fatalf("Redis down: %d directives, %v; want the source's 2", len(dirs), err)
	}
	// The source failing is an error even when Redis holds an entry for the old versions.
	rdb, prefix := testkit.Redis(t)
	c = consent.NewCache(src, rdb, consent.CacheOptions{Prefix: prefix})
	if _, err := c.InForce(ctx, person, time.Now()); err != nil {
		t.Fatal(err)
	}
	src.err = errs.E("test", errs.Unavailable, "down", errors.New("connection refused"))
	if dirs, err := c.InForce(ctx, person, time.Now()); err == nil || dirs != nil {
		t.Fatalf("source down: %d directives, %v; want an error", len(dirs), err)
	}
}

// BenchmarkCachedDecision measures a decision from cached directives: the version check
// and Redis round trips are the source's and the network's; this is the decode + Decide.
func BenchmarkCachedDecision(b *testing.B) {
	rdb, prefix := testkit.Redis(b)
	ctx := context.Background()
	src := &memSource{dirs: append(consent.DefaultPolicies(consent.PolicyConfig{}), optOut(consent.StatusInactive)), v: consent.Versions{Policy: 1}}
	c := consent.NewCache(src, rdb, consent.CacheOptions{Prefix: prefix})
	now := time.Now()
	if _, err := c.InForce(ctx, person, now); err != nil {
		b.Fatal(err)
	}
	b.Run("InForce+Decide", func(b *testing.B) {
		for b.Loop() {
			dirs, err := c.InForce(ctx, person, now)
			if err != nil {
				b.Fatal(err)
			}
			consent.Decide(dirs, treatReq(now))
		}
	})
	dirs, _ := c.InForce(ctx, person, now)
	b.Run("Decide", func(b *testing.B) {
		for b.Loop() {
			consent.Decide(dirs, treatReq(now))
		}
	})
}
