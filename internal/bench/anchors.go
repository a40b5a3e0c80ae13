package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/redis/go-redis/v9"

	"github.com/concord-hie/concord/internal/errs"
)

// Anchor names, as they appear in reports and in a scenario's Anchor field.
const (
	AnchorPG     = "pg-point-select"
	AnchorRedis  = "redis-get-1k"
	AnchorS3_4K  = "s3-get-4k"
	AnchorS3_64K = "s3-get-64k"
	AnchorS3_1M  = "s3-get-1m"
	AnchorHello  = "http-hello"
	// AnchorPGInsert is the write anchor: single-row 1.7 KB jsonb INSERTs with synchronous
	// commit. It writes, so it runs only when Config.Anchors names it.
	AnchorPGInsert = "pg-insert-1k7"
)

// target is one thing the harness measures: an anchor or a scenario.
type target struct {
	name    string
	unit    string // of the value: "ops/s", "req/s" or "B/s"
	metric  Metric
	workers int
	newOp   func(w int) Op
	counts  *countTracker // nil unless answers carry a result count
	items   *atomic.Int64 // resources handled, for Metric Resources
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// pgRows is the size of pgbench_accounts at a pgbench scale.
func pgRows(scale int) int { return scale * 100000 }

// setupPG opens a pool of workers connections on url, makes sure pgbench_accounts exists
// (creating and filling it at scale if absent, then VACUUM ANALYZE) and returns the
// point-select anchor. The table is left in place for the next run.
func setupPG(ctx context.Context, url string, scale, workers int, seed uint64) (*target, func(), error) {
	const op = "bench.setupPG"
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, nil, errs.E(op, errs.Invalid, "malformed database URL", err)
	}
	cfg.MaxConns = int32(workers)
	cfg.MinConns = int32(workers)
	cfg.ConnConfig.RuntimeParams["application_name"] = "concord-bench"
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, errs.E(op, errs.Unavailable, "database unavailable", err)
	}
	fail := func(msg string, err error) (*target, func(), error) {
		pool.Close()
		return nil, nil, errs.E(op, errs.Unavailable, msg, err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fail("database unavailable", err)
	}
	// One creator at a time when several benches share a database.
	_, err = conn.Exec(ctx, "SELECT pg_advisory_lock(7312)")
	if err == nil {
		err = ensurePgbench(ctx, conn, scale)
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(7312)")
	}
	if err != nil {
		conn.Release()
		return fail("cannot prepare pgbench_accounts", err)
	}
	var maxAid int
	err = conn.QueryRow(ctx, "SELECT coalesce(max(aid), 0) FROM pgbench_accounts").Scan(&maxAid)
	conn.Release()
	if err != nil {
		return fail("cannot read pgbench_accounts", err)
	}
	if maxAid < 1 {
		return fail("pgbench_accounts is empty", nil)
	}
	const q = "SELECT abalance FROM pgbench_accounts WHERE aid=$1"
	t := &target{name: AnchorPG, unit: "ops/s", workers: workers, newOp: func(w int) Op {
		rng := mrand.New(mrand.NewPCG(seed, uint64(w)))
		return func(ctx context.Context) (int64, error) {
			var bal int32
			if err := pool.QueryRow(ctx, q, rng.IntN(maxAid)+1).Scan(&bal); err != nil {
				return 0, err
			}
			return 4, nil
		}
	}}
	return t, pool.Close, nil
}

// ensurePgbench creates pgbench_accounts as pgbench -i would (scale·100,000 rows,
// fillfactor 100, primary key built after the load) unless it is already there.
func ensurePgbench(ctx context.Context, conn *pgxpool.Conn, scale int) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('pgbench_accounts') IS NOT NULL").Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for _, s := range []string{
		"CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84)) WITH (fillfactor=100)",
		fmt.Sprintf("INSERT INTO pgbench_accounts (aid, bid, abalance, filler) SELECT g, (g-1)/100000+1, 0, '' FROM generate_series(1, %d) g", pgRows(scale)),
		"ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid)",
	} {
		if _, err := tx.Exec(ctx, s); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "VACUUM (ANALYZE) pgbench_accounts")
	return err
}

// redisKeys is how many 1 KB values the Redis anchor reads at random.
const redisKeys = 1024

// setupRedis stores redisKeys values of 1 KB under prefix and returns the GET anchor; the
// cleanup deletes them.
func setupRedis(ctx context.Context, url, prefix string, workers int, seed uint64) (*target, func(), error) {
	const op = "bench.setupRedis"
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, nil, errs.E(op, errs.Invalid, "malformed Redis URL", err)
	}
	opt.PoolSize = workers
	opt.MinIdleConns = workers
	c := redis.NewClient(opt)
	keys := make([]string, redisKeys)
	val := make([]byte, 1024)
	rng := mrand.New(mrand.NewPCG(seed, 1))
	for i := range val {
		val[i] = 'a' + byte(rng.IntN(26))
	}
	pipe := c.Pipeline()
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%04d", prefix, i)
		pipe.Set(ctx, keys[i], val, time.Hour)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		c.Close()
		return nil, nil, errs.E(op, errs.Unavailable, "Redis unavailable", err)
	}
	cleanup := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Del(cctx, keys...)
		c.Close()
	}
	t := &target{name: AnchorRedis, unit: "ops/s", workers: workers, newOp: func(w int) Op {
		rng := mrand.New(mrand.NewPCG(seed, uint64(w)+100))
		return func(ctx context.Context) (int64, error) {
			b, err := c.Get(ctx, keys[rng.IntN(len(keys))]).Bytes()
			if err != nil {
				return 0, err
			}
			if len(b) != len(val) {
				return 0, &CheckError{Err: fmt.Errorf("value of %d bytes, want %d", len(b), len(val))}
			}
			return int64(len(b)), nil
		}
	}}
	return t, cleanup, nil
}

// S3Config locates the S3 server of the raw GET anchor.
type S3Config struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	Region    string // default us-east-1
	Secure    bool   // HTTPS
	// Bucket holds the bench objects. Empty: a fresh bucket is made and removed afterwards.
	// Set: the bucket must exist; only the bench's own objects are put and removed.
	Bucket string
}

// s3Objects is how many objects of each size the S3 anchor reads at random.
const s3Objects = 8

var s3Sizes = []struct {
	name string
	size int
}{{AnchorS3_4K, 4 << 10}, {AnchorS3_64K, 64 << 10}, {AnchorS3_1M, 1 << 20}}

// setupS3 puts s3Objects objects of 4 KB, 64 KB and 1 MB and returns a signed-GET anchor
// for each size; the cleanup removes the objects (and the bucket if it made it).
func setupS3(ctx context.Context, sc S3Config, workers int, seed uint64) ([]*target, func(), error) {
	const op = "bench.setupS3"
	region := sc.Region
	if region == "" {
		region = "us-east-1"
	}
	c, err := minio.New(sc.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(sc.AccessKey, sc.SecretKey, ""),
		Secure:       sc.Secure,
		Region:       region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   1,
	})
	if err != nil {
		return nil, nil, errs.E(op, errs.Invalid, "bad S3 configuration", err)
	}
	bucket, made := sc.Bucket, false
	if bucket == "" {
		bucket = "concord-bench-" + randomHex(6)
		if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: region}); err != nil {
			return nil, nil, errs.E(op, errs.Unavailable, "S3 unavailable", err)
		}
		made = true
	}
	prefix := "concord-bench/" + randomHex(6) + "/"
	var put []string
	cleanup := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, k := range put {
			_ = c.RemoveObject(cctx, bucket, k, minio.RemoveObjectOptions{})
		}
		if made {
			_ = c.RemoveBucket(cctx, bucket)
		}
	}
	rng := mrand.New(mrand.NewPCG(seed, 2))
	var ts []*target
	for _, sz := range s3Sizes {
		data := make([]byte, sz.size)
		keys := make([]string, s3Objects)
		for i := range keys {
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			keys[i] = fmt.Sprintf("%s%s/%d", prefix, sz.name, i)
			if _, err := c.PutObject(ctx, bucket, keys[i], bytes.NewReader(data), int64(len(data)),
				minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
				cleanup()
				return nil, nil, errs.E(op, errs.Unavailable, "S3 put failed", err)
			}
			put = append(put, keys[i])
		}
		size := int64(sz.size)
		ts = append(ts, &target{name: sz.name, unit: "ops/s", workers: workers, newOp: func(w int) Op {
			rng := mrand.New(mrand.NewPCG(seed, uint64(w)+200))
			buf := make([]byte, 32<<10)
			return func(ctx context.Context) (int64, error) {
				obj, err := c.GetObject(ctx, bucket, keys[rng.IntN(len(keys))], minio.GetObjectOptions{})
				if err != nil {
					return 0, s3Err(err)
				}
				n, err := io.CopyBuffer(discard{}, obj, buf)
				obj.Close()
				if err != nil {
					return 0, s3Err(err)
				}
				if n != size {
					return 0, &CheckError{Err: fmt.Errorf("object of %d bytes, want %d", n, size)}
				}
				return n, nil
			}
		}})
	}
	return ts, cleanup, nil
}

// discard is io.Discard without ReaderFrom, so io.CopyBuffer uses the worker's buffer.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// s3Err turns an S3 error answer into a StatusError so it counts as non-2xx.
func s3Err(err error) error {
	if er := minio.ToErrorResponse(err); er.StatusCode != 0 {
		return &StatusError{Status: er.StatusCode}
	}
	return err
}

// helloBody is the hello-world answer: {"message":"Hello, World!"}, 27 bytes of JSON.
type helloBody struct {
	Message string `json:"message"`
}

// setupHello serves Echo's c.JSON hello world on 127.0.0.1:0 in this process and returns
// the anchor driving it over conns keep-alive connections.
func setupHello(ctx context.Context, conns int, timeout time.Duration) (*target, func(), error) {
	const op = "bench.setupHello"
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/", func(c echo.Context) error {
		return c.JSON(http.StatusOK, helloBody{Message: "Hello, World!"})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, errs.E(op, errs.Unavailable, "cannot listen on loopback", err)
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	go srv.Serve(ln)
	client := NewHTTPClient(conns, timeout)
	want := []byte(`{"message":"Hello, World!"}`)
	req := HTTPRequest{
		URLs: []string{"http://" + ln.Addr().String() + "/"},
		Check: func(_ int, body []byte) error {
			if !bytes.Equal(bytes.TrimSuffix(body, []byte("\n")), want) {
				return fmt.Errorf("unexpected hello body of %d bytes", len(body))
			}
			return nil
		},
	}
	cleanup := func() {
		client.CloseIdleConnections()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}
	t := &target{name: AnchorHello, unit: "req/s", workers: conns, newOp: func(w int) Op {
		return HTTPOp(client, req, w)
	}}
	return t, cleanup, nil
}

// isAnchor reports whether name is one of the anchors.
// IsAnchor reports whether name is an anchor's name.
func IsAnchor(name string) bool { return isAnchor(name) }

func isAnchor(name string) bool {
	switch name {
	case AnchorPG, AnchorRedis, AnchorS3_4K, AnchorS3_64K, AnchorS3_1M, AnchorHello, AnchorPGInsert:
		return true
	}
	return false
}

// insertDoc is a 1.7 KB FHIR-like jsonb document for the write anchor.
func insertDoc() []byte {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2345-7","display":"Glucose"}]},"subject":{"reference":"Patient/bench"},"valueQuantity":{"value":5.4,"unit":"mmol/L"},"note":[`)
	for i := 0; b.Len() < 1650; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"text":"bench note %03d padding the document to its size"}`, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// setupPGInsert makes a table of its own in the database at url and returns the write
// anchor over a pool of workers connections; the cleanup drops the table.
func setupPGInsert(ctx context.Context, url string, workers int) (*target, func(), error) {
	const op = "bench.setupPGInsert"
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, nil, errs.E(op, errs.Invalid, "malformed database URL", err)
	}
	cfg.MaxConns = int32(workers)
	cfg.MinConns = int32(workers)
	cfg.ConnConfig.RuntimeParams["application_name"] = "concord-bench"
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, errs.E(op, errs.Unavailable, "database unavailable", err)
	}
	table := "bench_inserts_" + randomHex(4)
	if _, err := pool.Exec(ctx, "CREATE TABLE "+table+" (id bigserial PRIMARY KEY, doc jsonb NOT NULL)"); err != nil {
		pool.Close()
		return nil, nil, errs.E(op, errs.Unavailable, "cannot create the insert table", err)
	}
	cleanup := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = pool.Exec(cctx, "DROP TABLE IF EXISTS "+table)
		pool.Close()
	}
	doc := insertDoc()
	q := "INSERT INTO " + table + " (doc) VALUES ($1)"
	t := &target{name: AnchorPGInsert, unit: "ops/s", workers: workers, newOp: func(int) Op {
		return func(ctx context.Context) (int64, error) {
			if _, err := pool.Exec(ctx, q, doc); err != nil {
				return 0, err
			}
			return int64(len(doc)), nil
		}
	}}
	return t, cleanup, nil
}
