package portal

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/concord-hie/concord/internal/testkit"
)

// TestLimiterWindows: an hourly limiter on real Redis allows its limit across the minutes of
// one hour, refuses the next request with the wait until the hour ends, starts afresh in
// the next hour, and keeps counting in process when Redis is gone.
func TestLimiterWindows(t *testing.T) {
	t.Parallel()
	rdb, prefix := testkit.Redis(t)
	clock := &fakeClock{t: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)}
	l := newLimiter(rdb, prefix+"hour:", 3, time.Hour, clock.Now, slog.Default())
	ctx := context.Background()
	for i := range 3 {
		if ok, _ := l.allow(ctx, "login-a"); !ok {
			t.Fatalf("request %d refused", i+1)
		}
		clock.Add(10 * time.Minute)
	}
	ok, wait := l.allow(ctx, "login-a")
	if ok || wait != 30*time.Minute {
		t.Fatalf("fourth request in the hour: allowed %v, wait %v; want refused, 30m", ok, wait)
	}
	if ok, _ := l.allow(ctx, "login-b"); !ok {
		t.Errorf("another login was refused")
	}
	clock.Add(30 * time.Minute)
	if ok, _ := l.allow(ctx, "login-a"); !ok {
		t.Errorf("refused in the next hour")
	}
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { dead.Close() })
	local := newLimiter(dead, prefix+"dead:", 2, time.Hour, clock.Now, slog.Default())
	local.allow(ctx, "login-a")
	local.allow(ctx, "login-a")
	if ok, _ := local.allow(ctx, "login-a"); ok {
		t.Errorf("with Redis down the limit no longer holds")
	}
}
