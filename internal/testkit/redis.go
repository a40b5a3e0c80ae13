package testkit

import (
	"context"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Redis returns a client and a key prefix of the test's own; keys under the prefix are
// deleted when the test ends. Code under test must put every key under the prefix.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	url := os.Getenv("CONCORD_TEST_REDIS_URL")
	if url == "" {
		missing(t, "CONCORD_TEST_REDIS_URL")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("testkit: CONCORD_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opt)
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("testkit: Redis at %s does not answer: %v", opt.Addr, err)
	}
	prefix := "concordtest:" + RandomID(6) + ":"
	t.Cleanup(func() {
		iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
		c.Close()
	})
	return c, prefix
}
