package documents_test

import (
	"context"
	"testing"
	"time"

	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/documents/blobstest"
	"github.com/concord-hie/concord/internal/testkit"
)

// newS3 returns S3Blobs on a fresh bucket of the test S3 server (versitygw under make test).
func newS3(t *testing.T) *documents.S3Blobs {
	env := testkit.S3(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	b, err := documents.NewS3Blobs(ctx, documents.S3Config{
		Endpoint: env.Endpoint, AccessKey: env.AccessKey, SecretKey: env.SecretKey,
		Bucket: env.Bucket, Region: env.Region,
	})
	if err != nil {
		t.Fatalf("NewS3Blobs: %v", err)
	}
	return b
}

func TestS3BlobsConformance(t *testing.T) {
	blobstest.Run(t, func(t *testing.T) documents.Blobs { return newS3(t) })
}
