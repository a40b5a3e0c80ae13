package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Env locates a fresh, empty bucket on the real S3 server that `make test` runs.
type S3Env struct {
	Endpoint  string // host:port, plain HTTP
	AccessKey string
	SecretKey string
	Bucket    string
	Region    string
}

// S3 creates a bucket of its own for the calling test on the server named by
// CONCORD_TEST_S3_ENDPOINT (credentials from CONCORD_TEST_S3_ACCESS_KEY and
// CONCORD_TEST_S3_SECRET_KEY) and removes it, with every object and unfinished multipart
// upload in it, when the test ends. Without the endpoint the test is skipped, or fails
// when CONCORD_TEST_STRICT=1.
func S3(t testing.TB) S3Env {
	t.Helper()
	env := S3Env{
		Endpoint:  os.Getenv("CONCORD_TEST_S3_ENDPOINT"),
		AccessKey: os.Getenv("CONCORD_TEST_S3_ACCESS_KEY"),
		SecretKey: os.Getenv("CONCORD_TEST_S3_SECRET_KEY"),
		Region:    "us-east-1",
	}
	if env.Endpoint == "" {
		const msg = "CONCORD_TEST_S3_ENDPOINT not set: run `make test`"
		if os.Getenv("CONCORD_TEST_STRICT") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	c, err := minio.New(env.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(env.AccessKey, env.SecretKey, ""),
		Region:       env.Region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   1,
	})
	if err != nil {
		t.Fatalf("testkit.S3: client: %v", err)
	}
	env.Bucket = bucketName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, env.Bucket, minio.MakeBucketOptions{Region: env.Region}); err != nil {
		t.Fatalf("testkit.S3: create bucket on %s: %v", env.Endpoint, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := removeBucket(ctx, c, env.Bucket); err != nil {
			t.Errorf("testkit.S3: remove bucket %s: %v", env.Bucket, err)
		}
	})
	return env
}

// bucketName makes a valid, unique bucket name (3-63 of [a-z0-9-]) that hints at the test.
func bucketName(test string) string {
	var b strings.Builder
	b.WriteString("t-")
	for _, r := range strings.ToLower(test) {
		if b.Len() >= 40 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else if !strings.HasSuffix(b.String(), "-") {
			b.WriteByte('-')
		}
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	return strings.TrimRight(b.String(), "-") + "-" + hex.EncodeToString(rnd[:])
}

func removeBucket(ctx context.Context, c *minio.Client, bucket string) error {
	for u := range c.ListIncompleteUploads(ctx, bucket, "", true) {
		if u.Err != nil {
			break // not every server lists uploads; the bucket removal below reports leftovers
		}
		_ = c.RemoveIncompleteUpload(ctx, bucket, u.Key)
	}
	objs := c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true})
	for e := range c.RemoveObjects(ctx, bucket, objs, minio.RemoveObjectsOptions{}) {
		if e.Err != nil {
			return e.Err
		}
	}
	return c.RemoveBucket(ctx, bucket)
}
