package consent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// VersionedSource is what Cache decorates: a source of the directives in force that can
// also report, cheaply, the versions those directives are keyed by (records.StoreDirectives
// over Store and PostgreSQL is the one implementation).
//
//   - InForce returns the directives in force for person at at (the patient's and the
//     regional defaults), or an error when they cannot be read: the caller denies with 503.
//   - Versions returns person's consent version and the policy version as committed now.
//   - Current returns the current directives together with the versions they belong to,
//     read in one snapshot, so the pair can be cached under those versions.
type VersionedSource interface {
	InForce(ctx context.Context, person string, at time.Time) ([]Directive, error)
	Versions(ctx context.Context, person string) (Versions, error)
	Current(ctx context.Context, person string) ([]Directive, Versions, error)
}

// CacheOptions configures Cache. The zero value gives the defaults.
type CacheOptions struct {
	// Prefix goes before every Redis key (the deployment's RedisPrefix).
	Prefix string
	// TTL bounds how long an entry is kept; default 10 minutes. Entries are never stale
	// (their key carries the versions), the TTL only frees memory.
	TTL time.Duration
	// Timeout bounds each Redis call; default 250 ms. A slower Redis is treated as down.
	Timeout time.Duration
	// AsOfAfter: a request for a time more than this before now is an as-of question and
	// bypasses the cache (the source answers it from history); default 1 minute.
	AsOfAfter time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
}

// Cache decorates a VersionedSource with Redis. Every call reads the current versions from
// the source (PostgreSQL: one single-row lookup) and looks for directives cached under
// exactly those versions. Saving a directive bumps the person's consent version (and
// saving a default policy the policy version) in the saving transaction, so a change is in
// force for the next request: no stale permit and no stale deny. Redis holds no truth:
// when it is down, slow or flushed, Cache reads through to the source; when the source
// fails, InForce fails (never a cached answer without a fresh version check).
type Cache struct {
	src  VersionedSource
	rdb  redis.UniversalClient
	opts CacheOptions

	// memo holds decoded entries in process. What a key names never changes (the key
	// carries the versions), so a memo entry is exactly as fresh as the Redis one and
	// saves the round trip and the decode; it is cleared when it grows past memoMax.
	mu   sync.Mutex
	memo map[string][]Directive

	lastWarn atomic.Int64 // unix nanoseconds of the last Redis warning logged
}

const memoMax = 4096

// Forget drops the decoded entries held in process, so the next lookups go to Redis (or,
// when Redis has none, to the source). The bench's cold pass uses it; correctness never
// needs it, since an entry's key carries the consent versions it was read at.
func (c *Cache) Forget() {
	c.mu.Lock()
	clear(c.memo)
	c.mu.Unlock()
}

// NewCache returns src decorated with the Redis cache rdb.
func NewCache(src VersionedSource, rdb redis.UniversalClient, opts CacheOptions) *Cache {
	if opts.TTL <= 0 {
		opts.TTL = 10 * time.Minute
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 250 * time.Millisecond
	}
	if opts.AsOfAfter <= 0 {
		opts.AsOfAfter = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cache{src: src, rdb: rdb, opts: opts, memo: map[string][]Directive{}}
}

// cacheFormat names the encoding of cached entries; change it whenever Directive changes
// shape, so entries written by an older binary are never read.
const cacheFormat = "dirs2"

// Key returns the Redis key for person's directives at versions v.
func (c *Cache) Key(person string, v Versions) string {
	return c.opts.Prefix + "consent:" + cacheFormat + ":" + person + ":" +
		strconv.FormatInt(v.Person, 10) + ":" + strconv.FormatInt(v.Policy, 10)
}

// Versions reports the source's current versions (no cache).
func (c *Cache) Versions(ctx context.Context, person string) (Versions, error) {
	return c.src.Versions(ctx, person)
}

// Current returns the current directives and their versions, from Redis when an entry
// for the current versions exists.
func (c *Cache) Current(ctx context.Context, person string) ([]Directive, Versions, error) {
	v, err := c.src.Versions(ctx, person)
	if err != nil {
		return nil, Versions{}, err
	}
	if dirs, ok := c.get(ctx, c.Key(person, v)); ok {
		return dirs, v, nil
	}
	dirs, v, err := c.src.Current(ctx, person)
	if err != nil {
		return nil, Versions{}, err
	}
	c.set(ctx, c.Key(person, v), dirs)
	return dirs, v, nil
}

// InForce implements records.Directives. The returned slice may be shared with other
// callers: read it, never modify it. A time more than AsOfAfter in the past is an
// as-of question answered by the source from history; anything else gets the current
// directives through the cache.
func (c *Cache) InForce(ctx context.Context, person string, at time.Time) ([]Directive, error) {
	if at.Before(c.opts.Now().Add(-c.opts.AsOfAfter)) {
		return c.src.InForce(ctx, person, at)
	}
	dirs, _, err := c.Current(ctx, person)
	return dirs, err
}

// SourceTimeout is how long a read of the consent source may take: the source's Timeout()
// when it has one, else 2 s. A caller that reads the versions in its own statement
// (CurrentAt) bounds that statement by it, so a consent store that hangs is a prompt 503.
func (c *Cache) SourceTimeout() time.Duration {
	if t, ok := c.src.(interface{ Timeout() time.Duration }); ok && t.Timeout() > 0 {
		return t.Timeout()
	}
	return 2 * time.Second
}

// CurrentAt returns the current directives for a caller that has read person's versions v
// itself, in the statement that read the data they will gate (records.Read reads them with
// the resource, see VersionsSQL), so no version lookup is made here. The entry for v comes
// from memory or Redis; on a miss the source's current directives are read and cached under
// the versions they belong to, which are v or newer. The returned slice is shared: read it,
// never modify it.
func (c *Cache) CurrentAt(ctx context.Context, person string, v Versions) ([]Directive, error) {
	if dirs, ok := c.get(ctx, c.Key(person, v)); ok {
		return dirs, nil
	}
	dirs, cur, err := c.src.Current(ctx, person)
	if err != nil {
		return nil, err
	}
	c.set(ctx, c.Key(person, cur), dirs)
	return dirs, nil
}

func (c *Cache) get(ctx context.Context, key string) ([]Directive, bool) {
	c.mu.Lock()
	dirs, ok := c.memo[key]
	c.mu.Unlock()
	if ok {
		return dirs, true
	}
	rctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	b, err := c.rdb.Get(rctx, key).Bytes()
	if err != nil {
		if !errors.Is(err, redis.Nil) {
			c.warn("consent cache read failed; reading PostgreSQL", err)
		}
		return nil, false
	}
	if err := json.Unmarshal(b, &dirs); err != nil {
		c.opts.Logger.Warn("consent cache entry does not decode; reading PostgreSQL")
		return nil, false
	}
	c.remember(key, dirs)
	return dirs, true
}

// warn logs a Redis failure at most every 10 seconds: with Redis down every request
// falls back to PostgreSQL, and one line says so.
func (c *Cache) warn(msg string, err error) {
	now := c.opts.Now().UnixNano()
	last := c.lastWarn.Load()
	if now-last < int64(10*time.Second) || !c.lastWarn.CompareAndSwap(last, now) {
		return
	}
	c.opts.Logger.Warn(msg, "err", err.Error())
}

func (c *Cache) remember(key string, dirs []Directive) {
	c.mu.Lock()
	if len(c.memo) >= memoMax {
		clear(c.memo)
	}
	c.memo[key] = dirs
	c.mu.Unlock()
}

func (c *Cache) set(ctx context.Context, key string, dirs []Directive) {
	c.remember(key, dirs)
	b, err := json.Marshal(dirs)
	if err != nil {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.Timeout)
	defer cancel()
	if err := c.rdb.Set(rctx, key, b, c.opts.TTL).Err(); err != nil {
		c.warn("consent cache write failed", err)
	}
}
