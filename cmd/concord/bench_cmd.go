package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/concord-hie/concord/exchange"
	"github.com/concord-hie/concord/internal/bench"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/httpx"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		dur        time.Duration
		rounds     int
		jsonPath   string
		fhirBase   string
		queries    string
		peer       string
		anchors    string
		noGate     bool
		tokenEnv   string
		keepState  bool
		cpuProf    string
		scenSpec   string
		syntheaDir string
		notesPath  string
		hl7Dir     string
		persons    int
		coldCmd    string
	)
	cfg, _, err := parseConfig("bench", `bench [flags]

Runs the anchors of benchmarks.md (PostgreSQL point-select, Redis GET, signed S3 GET of
4 KB, 64 KB and 1 MB, HTTP hello-world) and Concord's scenarios interleaved A-B-A-B in one
bounded run on loopback, and prints each figure with its ratio to its anchor. Concord runs
in-process on a database of its own (the configured database name + "_bench") seeded with
the demo region. With --fhir-base and --queries it also runs a query list against another
FHIR server (and --peer, interleaved, comparing result counts). --scenarios picks scenarios
by name or name prefix (e.g. s2,s5-binary-4k; a trailing $ takes one name exactly); then only the anchors they refer to run
unless --anchors is given. Scenarios: `+strings.Join(benchScenarioNames, ", ")+`.`, args, stderr, func(fs *flag.FlagSet) {
		fs.DurationVar(&dur, "duration", 3*time.Second, "length of each measurement")
		fs.IntVar(&rounds, "rounds", 2, "A-B rounds (at least 2)")
		fs.StringVar(&jsonPath, "json", "", "write one JSON record per target and round to this file (default DATA_DIR/bench/run-TIME.jsonl)")
		fs.StringVar(&fhirBase, "fhir-base", "", "another FHIR server's base URL to run --queries against")
		fs.StringVar(&queries, "queries", "", "file of relative FHIR query URLs, one per line")
		fs.StringVar(&peer, "peer", "", "a peer FHIR base URL to run the same queries against, interleaved")
		fs.StringVar(&anchors, "anchors", "", "comma-separated anchors to run (default: all read anchors)")
		fs.BoolVar(&noGate, "no-gate", false, "do not wait for a quiet machine before each round")
		fs.StringVar(&tokenEnv, "token-env", "CONCORD_BENCH_TOKEN", "environment variable holding a bearer token for --fhir-base/--peer")
		fs.BoolVar(&keepState, "keep", false, "keep the bench data directory and database (to inspect them; drop the database when done)")
		fs.StringVar(&scenSpec, "scenarios", "", "comma-separated scenario names or name prefixes to run (default: all)")
		fs.StringVar(&syntheaDir, "synthea", filepath.Join("..", "shared", "data", "synthea", "bundles"), "directory of raw Synthea transaction bundles for S7")
		fs.StringVar(&notesPath, "notes", filepath.Join("..", "shared", "data", "synthea", "bulk-10", "DocumentReference.000.ndjson"), "Synthea clinical notes (NDJSON DocumentReferences) for S4")
		fs.StringVar(&hl7Dir, "hl7v2", filepath.Join("..", "shared", "data", "hl7v2"), "directory of the HL7 v2 corpora for S6 (simhospital/messages.hl7)")
		fs.IntVar(&persons, "persons", demoPersons, "people in the bench region: the demo's, then more drawn from the same seed (benchmarks.md measures at about 46, 1000 and 10000)")
		fs.StringVar(&coldCmd, "cold", "", "shell command that restarts PostgreSQL (e.g. 'scripts/services.sh restart-postgres'): first measure every read scenario once right after it, with this run's Redis keys emptied (cold), then as usual (warm)")
		fs.StringVar(&cpuProf, "cpuprofile", "", "write a Go CPU profile of the measurements (server and load generator, one process) to this file")
	})
	if err != nil {
		return err
	}
	if queries != "" && fhirBase == "" {
		return fmt.Errorf("--queries needs --fhir-base")
	}
	sel, err := bench.ParseSelection(scenSpec, benchScenarioNames)
	if err != nil {
		return fmt.Errorf("--scenarios: %v", err)
	}
	// Concord under test: its own database, loopback listeners, a fresh data dir.
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("CONCORD_DATABASE_URL: %v", err)
	}
	// A database per run, dropped at the end: the demo clients' keys live in this run's data
	// directory, so a region seeded by an earlier run could not be signed in to.
	admin := *u
	admin.Path = "/postgres"
	adminURL := admin.String()
	benchDB := strings.TrimPrefix(strings.TrimSuffix(u.Path, "/"), "/") + "_bench_" + strconv.Itoa(os.Getpid())
	u.Path = "/" + benchDB
	cfg.DatabaseURL = u.String()
	if keepState {
		fmt.Fprintf(stderr, "bench: keeping database %s\n", benchDB)
	} else {
		defer dropDatabase(adminURL, benchDB, stderr)
	}
	dataDir, err := os.MkdirTemp("", "concord-bench-")
	if err != nil {
		return err
	}
	if !keepState {
		defer os.RemoveAll(dataDir)
	}
	if jsonPath == "" {
		_ = os.MkdirAll(filepath.Join(cfg.DataDir, "bench"), 0o755)
		jsonPath = filepath.Join(cfg.DataDir, "bench", "run-"+time.Now().UTC().Format("20060102T150405Z")+".jsonl")
	}
	cfg.DataDir = dataDir
	if cfg.HTTPAddr, err = loopbackAddr(); err != nil {
		return err
	}
	if cfg.DevOIDCAddr, err = loopbackAddr(); err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(cfg.HTTPAddr)
	cfg.BaseURL = "http://127.0.0.1:" + port
	cfg.AdminAddr, cfg.MLLPAddr, cfg.OIDCIssuer, cfg.LogLevel = "", "", "", "error"
	// Keys of its own, so a run never reads a demo's cached decisions and a cold pass can
	// empty them all.
	cfg.RedisPrefix = "concord:bench:" + strconv.Itoa(os.Getpid()) + ":"
	if sel.Any(s6Names[0]) { // S6's ingest needs the MLLP listener, on loopback
		if cfg.MLLPAddr, err = loopbackAddr(); err != nil {
			return err
		}
	}
	if err := migrate(ctx, cfg, io.Discard); err != nil {
		return err
	}
	m := NewMain(cfg, io.Discard, stderr)
	defer m.Close() // before dropDatabase (defers run last-in first-out)
	region := sizedRegion(cfg.DemoSeed, persons)
	m.demoUsers = region.users()
	if err := m.Open(ctx); err != nil {
		return err
	}
	// $match is rate-limited per client (2/s) against enumeration; the bench measures the
	// match itself, so its one client gets an unreachable limit.
	m.exchange.IdentityLimiter = exchange.NewRateLimiter(1e9, 1e9, nil)
	if err := m.Listen(); err != nil {
		return err
	}
	if _, err := region.seed(ctx, m); err != nil {
		return fmt.Errorf("seeding the bench region: %w", err)
	}
	if err := m.vacuumAnalyze(ctx); err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go m.Run(sctx)

	own := region.members[0]
	tok, err := newTokenSource(cfg.DataDir, own.ID, cfg.BaseURL+"/token", "system/*.rs")
	if err != nil {
		return err
	}
	env := &benchEnv{ctx: ctx, m: m, region: region, seed: uint64(cfg.DemoSeed), read: tok, client: bench.NewHTTPClient(4, time.Minute),
		write: func(mi int) (*tokenSource, error) {
			return newTokenSource(cfg.DataDir, region.members[mi].ID, cfg.BaseURL+"/token", "system/*.cruds")
		}}
	defer env.client.CloseIdleConnections()
	var ownObs, otherObs string
	err = m.pool.QueryRow(ctx, `SELECT id FROM fhir_resources WHERE type = 'Observation' AND member_id = $1 ORDER BY id LIMIT 1`, own.ID).Scan(&ownObs)
	if err == nil {
		// A result another member sent about a person this member also knows: the consent path.
		err = m.pool.QueryRow(ctx, `SELECT r.id FROM fhir_resources r
			JOIN mpi_source_records s ON s.patient_id = r.patient_id
			JOIN mpi_source_records mine ON mine.person_id = s.person_id AND mine.member_id = $1
			WHERE r.type = 'Observation' AND r.member_id <> $1 ORDER BY r.id LIMIT 1`, own.ID).Scan(&otherObs)
	}
	if err != nil {
		return fmt.Errorf("bench data: %v", db.Map("bench", err))
	}
	// The same read with consent and audit switched off (issue 5's ratio): a second loopback
	// listener with the same middleware, token check and scope check, reading the stored
	// resource directly. It lives here, in the bench, so the enforcement point itself has no
	// switch that turns it off.
	offLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	offEcho := echo.New()
	offEcho.Use(httpx.RequestID(), httpx.AccessLog(m.log), httpx.Recover(m.log))
	offEcho.GET("/fhir/Observation/:id", func(c echo.Context) error {
		p, err := m.tokens.Verify(c.Request().Context(), strings.TrimPrefix(c.Request().Header.Get("Authorization"), "Bearer "))
		if err != nil {
			return c.NoContent(http.StatusUnauthorized)
		}
		if !p.Scopes.Allows("Observation", 'r') {
			return c.NoContent(http.StatusForbidden)
		}
		st, err := m.fhir.Get(c.Request().Context(), nil, "Observation", c.Param("id"))
		if err != nil {
			return c.NoContent(http.StatusNotFound)
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.Blob(http.StatusOK, "application/fhir+json", st.Body)
	})
	offSrv := &http.Server{Handler: offEcho, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = offSrv.Serve(offLn) }()
	defer offSrv.Close()
	offBase := "http://" + offLn.Addr().String()
	okCheck := func(status int, body []byte) error {
		if !strings.Contains(string(body), `"resourceType":"Observation"`) {
			return fmt.Errorf("answer is not an Observation")
		}
		return nil
	}
	scenarios := []bench.Scenario{
		bench.HTTPScenario{Name: "thin-slice-read", URL: cfg.BaseURL + "/fhir/Observation/" + ownObs, Header: tok.header, Check: okCheck, Anchor: bench.AnchorPG, Conns: 16},
		bench.HTTPScenario{Name: "thin-slice-read-off", URL: offBase + "/fhir/Observation/" + ownObs, Header: tok.header, Check: okCheck, Anchor: bench.AnchorPG, Conns: 16},
		bench.HTTPScenario{Name: "regional-read", URL: cfg.BaseURL + "/fhir/Observation/" + otherObs, Header: tok.header, Check: okCheck, Anchor: bench.AnchorPG, Conns: 16},
	}
	mix := sel.Has(mixName) // the mix takes its parts from the read scenarios (mixParts)
	if sel.Any(s2Names...) || mix {
		ss, err := env.patientSearch()
		if err != nil {
			return fmt.Errorf("S2: %w", err)
		}
		scenarios = append(scenarios, ss...)
	}
	if sel.Any(s3Names...) || mix {
		ss, err := env.labSearch()
		if err != nil {
			return fmt.Errorf("S3: %w", err)
		}
		scenarios = append(scenarios, ss...)
	}
	// inputMissing handles a scenario group (names) whose input data could not be loaded
	// (err): a run that named the group fails; otherwise (a whole run, or the mix, which
	// takes its parts from the groups) the group is skipped with a note.
	inputMissing := func(name, flag string, names []string, err error) (skip bool, fail error) {
		switch {
		case err == nil:
			return false, nil
		case sel.All() || !sel.Any(names...):
			fmt.Fprintf(stdout, "note: %s skipped: %v (see %s)\n", name, err, flag)
			return true, nil
		}
		return true, fmt.Errorf("%s: %v", name, err)
	}
	if sel.Any(s4Names...) || mix {
		_, err := os.Stat(notesPath)
		if skip, fail := inputMissing("S4", "--notes", s4Names, err); fail != nil {
			return fail
		} else if !skip {
			ss, err := env.docSearch(notesPath)
			if err != nil {
				return fmt.Errorf("S4: %w", err)
			}
			scenarios = append(scenarios, ss...)
		}
	}
	if sel.Any(s5Names...) || mix {
		ss, err := env.documents(s3Workers)
		if err != nil {
			return fmt.Errorf("S5: %w", err)
		}
		scenarios = append(scenarios, ss...)
	}
	if sel.Any(s8Names...) {
		ss, err := env.portalPage()
		if err != nil {
			return fmt.Errorf("S8: %w", err)
		}
		scenarios = append(scenarios, ss...)
	}
	if sel.Any(s6Names[1]) {
		s, stop, err := env.mllpParse(simhospitalFile(hl7Dir))
		if skip, fail := inputMissing(s6Names[1], "--hl7v2", s6Names[1:], err); fail != nil {
			return fail
		} else if !skip {
			defer stop()
			scenarios = append(scenarios, s)
		}
	}
	mixWith := mixParts(scenarios)
	scenarios = sel.Filter(scenarios)
	var loads []bench.Scenario
	var loadChecks []func() error
	if sel.Any(s6Names[0]) {
		s, check, err := env.mllpIngest(simhospitalFile(hl7Dir))
		if skip, fail := inputMissing("S6", "--hl7v2", s6Names[:1], err); fail != nil {
			return fail
		} else if !skip {
			loads, loadChecks = append(loads, s), append(loadChecks, check)
		}
	}
	if sel.Any(s7Names...) {
		ss, check, err := env.synthea(syntheaDir)
		if skip, fail := inputMissing("S7", "--synthea", s7Names, err); fail != nil {
			return fail
		} else if !skip {
			loads, loadChecks = append(loads, sel.Filter(ss)...), append(loadChecks, check)
		}
	}
	if queries != "" {
		f, err := os.Open(queries)
		if err != nil {
			return fmt.Errorf("--queries: %v", err)
		}
		qs, err := bench.ParseQueryList(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("--queries: %v", err)
		}
		ext := func() http.Header {
			h := http.Header{"Accept": {"application/fhir+json"}}
			if t := os.Getenv(tokenEnv); t != "" {
				h.Set("Authorization", "Bearer "+t)
			}
			return h
		}
		ql := bench.QueryList{Base: fhirBase, Header: ext, Peer: peer, PeerHeader: ext, Queries: qs, Anchor: bench.AnchorPG}
		scenarios = append(scenarios, ql.Scenarios()...)
	}
	s3 := bench.S3Config{Endpoint: cfg.S3Endpoint, AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3SecretKey, Region: cfg.S3Region, Secure: cfg.S3Secure}
	if m.devS3 != nil {
		s3.Endpoint, s3.AccessKey, s3.SecretKey = m.devS3.Endpoint(), m.devS3.AccessKey(), m.devS3.SecretKey()
		fmt.Fprintln(stdout, "note: no CONCORD_S3_ENDPOINT: the S3 anchors measure the embedded development server, not a production S3 server")
	}
	bcfg := bench.Config{DatabaseURL: cfg.DatabaseURL, RedisURL: cfg.RedisURL, S3: s3, Duration: dur, Rounds: rounds,
		Scenarios: scenarios, Out: stdout, JSONPath: jsonPath, Commit: version, Seed: uint64(cfg.DemoSeed), Size: len(region.persons),
		Gate: bench.Gate{Disabled: noGate}, Workers: bench.Workers{S3: s3Workers}}
	if anchors != "" {
		bcfg.Anchors = strings.Split(anchors, ",")
	} else if !sel.All() {
		bcfg.Anchors = referencedAnchors(scenarios)
	}
	if cpuProf != "" {
		f, err := os.Create(cpuProf)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %v", err)
		}
		defer pprof.StopCPUProfile()
	}
	defer deleteRedisKeys(context.Background(), m.redis, cfg.RedisPrefix)
	if coldCmd != "" && len(scenarios) > 0 {
		fmt.Fprintln(stdout, "cold pass (each scenario for at most 0.5 s right after a PostgreSQL restart, its caches emptied; no ratios):")
		ccfg := bcfg
		// Only the first requests after a restart are cold: a short measurement, so the
		// figure is not mostly warm requests.
		ccfg.Duration = min(dur, coldDuration)
		ccfg.Cold = func(ctx context.Context, _ string) error { return m.coldStart(ctx, coldCmd, adminURL, stderr) }
		if _, err := bench.Run(ctx, ccfg); err != nil {
			return err
		}
		bcfg.AppendJSON = true
		fmt.Fprintln(stdout, "\nwarm pass:")
	}
	if len(scenarios) > 0 || sel.All() {
		rep, err := bench.Run(ctx, bcfg)
		if err != nil {
			return err
		}
		printOnOff(stdout, rep, "thin-slice-read", "thin-slice-read-off")
		printBytesRatios(stdout, rep, s5Names[:3]...)
		bcfg.AppendJSON = true
	}
	if mix {
		fmt.Fprintln(stdout, "\nmix (open model, after the reads):")
		if _, err := bench.RunMix(ctx, bench.Mix{Parts: mixWith, Workers: mixWorkers, Duration: max(dur, minLoadDuration),
			Seed: uint64(cfg.DemoSeed)}, stdout); err != nil {
			return err
		}
	}
	// Loads change the database, so they run after every read, as a second A-B phase
	// against the INSERT anchor.
	if len(loads) > 0 {
		fmt.Fprintln(stdout, "\nload phase (after the reads):")
		lcfg := bcfg
		lcfg.Anchors, lcfg.Scenarios = []string{bench.AnchorPGInsert}, loads
		// A bundle takes up to a second or two: measure long enough for several.
		lcfg.Duration = max(dur, minLoadDuration)
		lrep, err := bench.Run(ctx, lcfg)
		if err != nil {
			return err
		}
		printMLLP(stdout, lrep)
		for _, check := range loadChecks {
			if err := check(); err != nil {
				return err
			}
		}
		fmt.Fprintln(stdout, "load checks: every S6 message acknowledged AA and stored once; every S7 bundle answered with all entries 2xx, no duplicate Patient")
	}
	fmt.Fprintf(stdout, "\nJSON records: %s\n", jsonPath)
	return nil
}

// coldDuration bounds each measurement of the cold pass.
const coldDuration = 500 * time.Millisecond

// minLoadDuration is the shortest measurement of the load phase.
const minLoadDuration = 5 * time.Second

// s3Workers is the S3 anchors' concurrency, which S5 matches.
const s3Workers = 8

// benchScenarioNames are the scenarios `concord bench` knows, in run order (a query list's
// scenarios are named after its queries and always selected).
var benchScenarioNames = slices.Concat([]string{"thin-slice-read", "thin-slice-read-off", "regional-read"}, s2Names, s3Names, s4Names, s5Names, s8Names, []string{mixName}, s6Names, s7Names)

// referencedAnchors returns the anchors the scenarios are ratios to.
func referencedAnchors(ss []bench.Scenario) []string {
	var out []string
	for _, s := range ss {
		r := s.Reference()
		if bench.IsAnchor(r) && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// printOnOff prints issue 5's ratio: the read with consent and audit on over the same read
// with both off, per round (same round, so the same machine noise) and their median.
func printOnOff(w io.Writer, rep *bench.Report, on, off string) {
	vals := map[int][2]float64{}
	for _, r := range rep.Records {
		v := vals[r.Round]
		switch r.Name {
		case on:
			v[0] = r.Value
		case off:
			v[1] = r.Value
		default:
			continue
		}
		vals[r.Round] = v
	}
	var ratios []float64
	for _, v := range vals {
		if v[0] > 0 && v[1] > 0 {
			ratios = append(ratios, v[0]/v[1])
		}
	}
	if len(ratios) == 0 {
		return
	}
	sort.Float64s(ratios)
	med := ratios[len(ratios)/2]
	if len(ratios)%2 == 0 {
		med = (ratios[len(ratios)/2-1] + ratios[len(ratios)/2]) / 2
	}
	fmt.Fprintf(w, "\n%s / %s (consent+audit on vs off): median %.1f %% over %d rounds (min %.1f %%, max %.1f %%); goal >= 80 %%\n",
		on, off, 100*med, len(ratios), 100*ratios[0], 100*ratios[len(ratios)-1])
}

// dropDatabase drops the run's database; a failure is reported, not fatal.
func dropDatabase(adminURL, name string, stderr io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err == nil {
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		conn.Close(ctx)
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: could not drop database %s: %v\n", name, err)
	}
}

// loopbackAddr returns a loopback address that was free a moment ago.
func loopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// tokenSource signs backend-services assertions for a demo member and keeps a fresh
// access token, as an EHR does.
type tokenSource struct {
	clientID, tokenURL string
	scope              string
	key                jose.JSONWebKey
	hc                 *http.Client // no redirects: the request carries a signed assertion
	mu                 sync.Mutex
	token              string
	expires            time.Time
}

func newTokenSource(dataDir, memberID, tokenURL, scope string) (*tokenSource, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "demo-clients", memberID+".json"))
	if err != nil {
		return nil, err
	}
	var dc struct {
		ClientID string          `json:"client_id"`
		Key      json.RawMessage `json:"private_jwk"`
	}
	if err := json.Unmarshal(b, &dc); err != nil {
		return nil, err
	}
	ts := &tokenSource{clientID: dc.ClientID, tokenURL: tokenURL, scope: scope, hc: &http.Client{
		Timeout: 30 * time.Second,
		// A redirect would re-send the client assertion (307, 308) wherever it points: the
		// redirect is the answer, and not 200.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	if err := ts.key.UnmarshalJSON(dc.Key); err != nil {
		return nil, err
	}
	return ts, nil
}

func (ts *tokenSource) header() http.Header {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.token == "" || time.Until(ts.expires) < time.Minute {
		if err := ts.refresh(); err != nil {
			return http.Header{}
		}
	}
	return http.Header{"Authorization": {"Bearer " + ts.token}, "Accept": {"application/fhir+json"}}
}

func (ts *tokenSource) refresh() error {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: ts.key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return err
	}
	now := time.Now()
	a, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: ts.clientID, Subject: ts.clientID, Audience: jwt.Audience{ts.tokenURL},
		ID: httpx.NewRequestID(), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute))}).Serialize()
	if err != nil {
		return err
	}
	resp, err := ts.hc.PostForm(ts.tokenURL, url.Values{"grant_type": {"client_credentials"}, "scope": {ts.scope},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != http.StatusOK {
		if tr.Error != "" {
			return fmt.Errorf("token endpoint answered %d: %s (%s)", resp.StatusCode, tr.Error, tr.Description)
		}
		return fmt.Errorf("token endpoint answered %d", resp.StatusCode)
	}
	ts.token, ts.expires = tr.AccessToken, now.Add(time.Duration(tr.ExpiresIn)*time.Second)
	return nil
}

// analyze refreshes the planner's statistics of every table.
func (m *Main) analyze(ctx context.Context) error { return m.asOwner(ctx, "ANALYZE") }

// vacuumAnalyze vacuums every table and refreshes its statistics.
func (m *Main) vacuumAnalyze(ctx context.Context) error { return m.asOwner(ctx, "VACUUM (ANALYZE)") }

// coldStart restarts PostgreSQL with the shell command restart, waits until the database
// answers again (at most a minute), drops the server pool's connections to the old server,
// forgets the consent decisions held in process and deletes every Redis key under the run's
// prefix, so the next request finds the database and the caches cold.
func (m *Main) coldStart(ctx context.Context, restart, adminURL string, stderr io.Writer) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", restart)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("--cold %q: %v", restart, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, adminURL)
		if err == nil {
			err = conn.Ping(cctx)
			conn.Close(cctx)
		}
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("PostgreSQL does not answer after --cold: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	m.pool.Reset()
	if err := m.pool.Ping(ctx); err != nil {
		return fmt.Errorf("after --cold: %v", err)
	}
	for _, c := range m.consentCaches {
		c.Forget()
	}
	return deleteRedisKeys(ctx, m.redis, m.cfg.RedisPrefix)
}

// deleteRedisKeys deletes every key that starts with prefix.
func deleteRedisKeys(ctx context.Context, rdb *redis.Client, prefix string) error {
	iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return err
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := rdb.Del(ctx, keys[:n]...).Err(); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// asOwner runs a maintenance statement on the database as the role that owns its tables:
// the server's pool runs as concord_app, which ANALYZE and VACUUM skip table by table.
func (m *Main) asOwner(ctx context.Context, sql string) error {
	pool, err := openAdminDB(ctx, m.cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %v", strings.ToLower(strings.Fields(sql)[0]), err)
	}
	return nil
}
