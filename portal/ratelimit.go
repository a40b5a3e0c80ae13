package portal

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/concord-hie/concord/internal/errs"
)

// shareRatePerMinute is how many share-page requests one client IP may make a minute,
// whatever their outcome: a token has 256 bits, so this only stops a client hammering the
// database, and it leaves a real recipient ample room.
const shareRatePerMinute = 30

// ipLimiter counts requests per client IP (or per login) in fixed windows in Redis, so every
// replica shares the count. When Redis fails it counts in process instead (security.md:
// rate limits degrade to in-process, never to none).
type ipLimiter struct {
	rdb    redis.Cmdable
	prefix string
	limit  int64
	period int64 // the window in seconds
	now    func() time.Time
	log    *slog.Logger

	mu     sync.Mutex
	window int64            // the window the local counts are for
	local  map[string]int64 // IP → requests in window, used while Redis fails
}

func newIPLimiter(rdb redis.Cmdable, prefix string, perMinute int64, now func() time.Time, log *slog.Logger) *ipLimiter {
	return newLimiter(rdb, prefix, perMinute, time.Minute, now, log)
}

// newLimiter allows limit requests per key in each window of length period (whole seconds).
func newLimiter(rdb redis.Cmdable, prefix string, limit int64, period time.Duration, now func() time.Time, log *slog.Logger) *ipLimiter {
	return &ipLimiter{rdb: rdb, prefix: prefix, limit: limit, period: int64(period / time.Second), now: now, log: log, local: map[string]int64{}}
}

// allow counts one request from ip and reports whether it is within the limit, and if not,
// how long until the window ends.
func (l *ipLimiter) allow(ctx context.Context, ip string) (bool, time.Duration) {
	now := l.now()
	win := now.Unix() / l.period
	wait := time.Duration(l.period-now.Unix()%l.period) * time.Second
	key := l.prefix + strconv.FormatInt(win, 10) + ":" + ip
	rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	pipe := l.rdb.TxPipeline()
	incr := pipe.Incr(rctx, key)
	pipe.Expire(rctx, key, 2*time.Duration(l.period)*time.Second)
	_, err := pipe.Exec(rctx)
	if err == nil {
		return incr.Val() <= l.limit, wait
	}
	l.log.Warn("portal: rate limit counted in process", "err", err)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.window != win {
		l.window, l.local = win, map[string]int64{}
	}
	l.local[ip]++
	return l.local[ip] <= l.limit, wait
}

// middleware refuses a client IP over the limit with 429 and Retry-After.
func (l *ipLimiter) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ok, wait := l.allow(c.Request().Context(), c.RealIP())
		if !ok {
			c.Response().Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)))
			return errs.E("portal.rateLimit", errs.RateLimited, "too many requests")
		}
		return next(c)
	}
}
