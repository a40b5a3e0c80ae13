// Package blobstest holds the conformance suite that every documents.Blobs implementation
// must pass, and tools for fault tests against S3.
package blobstest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/internal/errs"
)

// Content returns n deterministic pseudo-random bytes for seed, and their blob key.
func Content(seed uint64, n int) ([]byte, string) {
	var s [32]byte
	s[0], s[1], s[2], s[3] = byte(seed), byte(seed>>8), byte(seed>>16), byte(seed>>24)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b, documents.KeyOf(b)
}

// Run runs the conformance suite. newBlobs must return an empty store of its own for each
// call (each subtest calls it once).
func Run(t *testing.T, newBlobs func(t *testing.T) documents.Blobs) {
	t.Run("RoundTrip", func(t *testing.T) {
		b := newBlobs(t)
		for i, n := range []int{0, 4 << 10, 1 << 20, 6 << 20} { // 6 MB goes up in parts
			data, key := Content(uint64(100+i), n)
			mustPut(t, b, key, data, "application/pdf")
			if got := mustGet(t, b, key, nil, int64(n)); !bytes.Equal(got, data) {
				t.Errorf("%d bytes: got %d different bytes back", n, len(got))
			}
			info, err := b.Stat(ctx(t), key)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if info.Key != key || info.Size != int64(n) || info.ContentType != "application/pdf" {
				t.Errorf("Stat = %+v, want key %s size %d type application/pdf", info, key, n)
			}
			if info.LastModified.IsZero() {
				t.Errorf("Stat: zero LastModified")
			}
		}
	})

	t.Run("Ranges", func(t *testing.T) {
		b := newBlobs(t)
		data, key := Content(7, 64<<10)
		mustPut(t, b, key, data, "text/plain")
		size := int64(len(data))
		for _, r := range []documents.ByteRange{{Start: 0, End: 0}, {Start: 10, End: 99}, {Start: size - 10, End: -1}, {Start: size - 5, End: size + 100}, {Start: 0, End: -1}} {
			want := data[r.Start : r.Start+r.Len(size)]
			if got := mustGet(t, b, key, &r, size); !bytes.Equal(got, want) {
				t.Errorf("range %+v: got %d bytes, want %d", r, len(got), len(want))
			}
		}
		_, _, err := b.Get(ctx(t), key, &documents.ByteRange{Start: size + 1, End: -1})
		if !errs.Is(err, errs.Invalid) {
			t.Errorf("range past the end: err = %v, want invalid", err)
		}
		_, _, err = b.Get(ctx(t), key, &documents.ByteRange{Start: 5, End: 2})
		if !errs.Is(err, errs.Invalid) {
			t.Errorf("inverted range: err = %v, want invalid", err)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		b := newBlobs(t)
		_, key := Content(1, 10)
		if _, _, err := b.Get(ctx(t), key, nil); !errs.Is(err, errs.NotFound) {
			t.Errorf("Get missing: err = %v, want not_found", err)
		}
		if _, _, err := b.Get(ctx(t), key, &documents.ByteRange{Start: 0, End: 1}); !errs.Is(err, errs.NotFound) {
			t.Errorf("Get range of missing: err = %v, want not_found", err)
		}
		if _, err := b.Stat(ctx(t), key); !errs.Is(err, errs.NotFound) {
			t.Errorf("Stat missing: err = %v, want not_found", err)
		}
		for _, bad := range []string{"", "../etc/passwd", key[:63], key + "0", "A" + key[1:]} {
			if _, err := b.Stat(ctx(t), bad); !errs.Is(err, errs.Invalid) {
				t.Errorf("Stat(%q): err = %v, want invalid", bad, err)
			}
			if err := b.Put(ctx(t), bad, bytes.NewReader(nil), 0, ""); !errs.Is(err, errs.Invalid) {
				t.Errorf("Put(%q): err = %v, want invalid", bad, err)
			}
		}
	})

	t.Run("OverwriteIdempotent", func(t *testing.T) {
		b := newBlobs(t)
		data, key := Content(2, 4<<10)
		mustPut(t, b, key, data, "text/plain")
		before, _ := b.Stat(ctx(t), key)
		mustPut(t, b, key, data, "text/plain")
		after, err := b.Stat(ctx(t), key)
		if err != nil {
			t.Fatal(err)
		}
		if after.Size != before.Size || after.LastModified.Before(before.LastModified) {
			t.Errorf("after re-put: %+v, before %+v", after, before)
		}
		if got := mustGet(t, b, key, nil, int64(len(data))); !bytes.Equal(got, data) {
			t.Errorf("content changed by an identical re-put")
		}
		if n := count(t, b, ""); n != 1 {
			t.Errorf("List after re-put: %d objects, want 1", n)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		b := newBlobs(t)
		data, key := Content(3, 100)
		mustPut(t, b, key, data, "")
		if err := b.Delete(ctx(t), key); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := b.Stat(ctx(t), key); !errs.Is(err, errs.NotFound) {
			t.Errorf("Stat after Delete: err = %v, want not_found", err)
		}
		if err := b.Delete(ctx(t), key); err != nil {
			t.Errorf("Delete of a missing key: %v, want nil", err)
		}
	})

	t.Run("List", func(t *testing.T) {
		b := newBlobs(t)
		keys := map[string]bool{}
		for i := range 5 {
			data, key := Content(uint64(20+i), 10+i)
			mustPut(t, b, key, data, "")
			keys[key] = true
		}
		var prev string
		seen := 0
		for info, err := range b.List(ctx(t), "", time.Time{}) {
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if !keys[info.Key] || info.Size < 10 {
				t.Errorf("List yielded %+v", info)
			}
			if info.Key <= prev {
				t.Errorf("List out of order: %s after %s", info.Key, prev)
			}
			prev = info.Key
			seen++
		}
		if seen != 5 {
			t.Errorf("List: %d objects, want 5", seen)
		}
		for key := range keys {
			if n := count(t, b, key[:3]); n < 1 {
				t.Errorf("List(prefix %s): %d objects, want >= 1", key[:3], n)
			}
			if n := count(t, b, key); n != 1 {
				t.Errorf("List(prefix whole key): %d objects, want 1", n)
			}
		}
		if n := countOlder(t, b, time.Now().Add(-time.Hour)); n != 0 {
			t.Errorf("List(older than an hour ago): %d objects, want 0", n)
		}
		if n := countOlder(t, b, time.Now().Add(time.Hour)); n != 5 {
			t.Errorf("List(older than an hour ahead): %d objects, want 5", n)
		}
		stop := 0
		for range b.List(ctx(t), "", time.Time{}) {
			stop++
			break
		}
		if stop != 1 {
			t.Errorf("breaking out of List: %d iterations", stop)
		}
	})

	t.Run("FailedUploadLeavesNothing", func(t *testing.T) {
		b := newBlobs(t)
		for _, tc := range []struct {
			name   string
			size   int
			failAt int
		}{
			{"single", 1 << 20, 512 << 10},
			{"single-last-byte", 64 << 10, 64<<10 - 1},
			{"multipart-first-part", 6 << 20, 1 << 20},
			{"multipart-last-part", 11 << 20, 10<<20 + 100},
		} {
			data, key := Content(uint64(tc.size+tc.failAt), tc.size)
			r := &failingReader{r: bytes.NewReader(data), left: tc.failAt}
			err := b.Put(ctx(t), key, r, int64(len(data)), "")
			if err == nil {
				t.Errorf("%s: Put with a reader failing at byte %d succeeded", tc.name, tc.failAt)
			}
			assertAbsent(t, b, key, tc.name)
		}
	})

	t.Run("BadBodyLeavesNothing", func(t *testing.T) {
		b := newBlobs(t)
		data, key := Content(4, 100<<10)
		other, _ := Content(5, 100<<10)
		if err := b.Put(ctx(t), key, bytes.NewReader(other), int64(len(other)), ""); !errs.Is(err, errs.Invalid) {
			t.Errorf("Put of bytes that do not hash to the key: err = %v, want invalid", err)
		}
		assertAbsent(t, b, key, "wrong content")
		if err := b.Put(ctx(t), key, bytes.NewReader(data[:len(data)-1]), int64(len(data)), ""); !errs.Is(err, errs.Invalid) {
			t.Errorf("Put of a short body: err = %v, want invalid", err)
		}
		assertAbsent(t, b, key, "short body")
		if err := b.Put(ctx(t), key, io.MultiReader(bytes.NewReader(data), bytes.NewReader([]byte("x"))), int64(len(data)), ""); !errs.Is(err, errs.Invalid) {
			t.Errorf("Put of a long body: err = %v, want invalid", err)
		}
		assertAbsent(t, b, key, "long body")
		big, bigKey := Content(6, 6<<20)
		big[len(big)-1] ^= 1
		if err := b.Put(ctx(t), bigKey, bytes.NewReader(big), int64(len(big)), ""); !errs.Is(err, errs.Invalid) {
			t.Errorf("multipart Put with the last byte flipped: err = %v, want invalid", err)
		}
		assertAbsent(t, b, bigKey, "multipart wrong content")
	})

	t.Run("ConcurrentPutSameKey", func(t *testing.T) {
		b := newBlobs(t)
		for _, n := range []int{256 << 10, 6 << 20} {
			data, key := Content(uint64(n), n)
			var wg sync.WaitGroup
			errc := make(chan error, 4)
			for range 4 {
				wg.Go(func() { errc <- b.Put(ctx(t), key, bytes.NewReader(data), int64(len(data)), "") })
			}
			wg.Wait()
			close(errc)
			for err := range errc {
				if err != nil {
					t.Errorf("%d bytes: concurrent Put: %v", n, err)
				}
			}
			if got := mustGet(t, b, key, nil, int64(n)); !bytes.Equal(got, data) {
				t.Errorf("%d bytes: content after concurrent puts differs", n)
			}
		}
	})

	t.Run("Ping", func(t *testing.T) {
		if err := newBlobs(t).Ping(ctx(t)); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustPut(t *testing.T, b documents.Blobs, key string, data []byte, ct string) {
	t.Helper()
	if err := b.Put(ctx(t), key, bytes.NewReader(data), int64(len(data)), ct); err != nil {
		t.Fatalf("Put %d bytes: %v", len(data), err)
	}
}

func mustGet(t *testing.T, b documents.Blobs, key string, rng *documents.ByteRange, size int64) []byte {
	t.Helper()
	rc, info, err := b.Get(ctx(t), key, rng)
	if err != nil {
		t.Fatalf("Get %+v: %v", rng, err)
	}
	defer rc.Close()
	if info.Size != size {
		t.Errorf("Get %+v: info.Size = %d, want the whole object's %d", rng, info.Size, size)
	}
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get %+v: read: %v", rng, err)
	}
	return got
}

func assertAbsent(t *testing.T, b documents.Blobs, key, what string) {
	t.Helper()
	if _, err := b.Stat(ctx(t), key); !errs.Is(err, errs.NotFound) {
		t.Errorf("%s: Stat after the failed Put: err = %v, want not_found", what, err)
	}
	if n := count(t, b, key); n != 0 {
		t.Errorf("%s: List shows %d objects under the key after the failed Put", what, n)
	}
}

func count(t *testing.T, b documents.Blobs, prefix string) int {
	t.Helper()
	n := 0
	for _, err := range b.List(ctx(t), prefix, time.Time{}) {
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		n++
	}
	return n
}

func countOlder(t *testing.T, b documents.Blobs, olderThan time.Time) int {
	t.Helper()
	n := 0
	for _, err := range b.List(ctx(t), "", olderThan) {
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		n++
	}
	return n
}

// errInjected is what failingReader returns.
var errInjected = errors.New("blobstest: injected read failure")

// failingReader yields left bytes of r, then fails.
type failingReader struct {
	r    io.Reader
	left int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, errInjected
	}
	if len(p) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= n
	return n, err
}
