// Package config parses Concord's configuration once, from CONCORD_* environment variables
// and matching command-line flags, into a typed struct that cmd hands down. Nothing else
// reads the environment. A flag beats its variable; X_FILE beats X for secrets.
package config

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config is every setting Concord has. The zero value is not valid; use Defaults.
type Config struct {
	HTTPAddr  string // portal and FHIR API listener
	BaseURL   string // public base URL of the HTTP listener, without a trailing slash
	AdminAddr string // metrics and pprof; must be loopback
	MLLPAddr  string // HL7 v2 MLLP listener; empty disables it
	// MLLP over TLS with member client certificates: all three or none. Without them the
	// listener must bind a loopback address (development only).
	MLLPCertFile, MLLPKeyFile, MLLPClientCAFile string
	// TrustedProxies are the reverse proxies (TLS terminators, load balancers) in front of
	// the HTTP listener. A request whose peer is in one of them is attributed to the
	// address it names in X-Forwarded-For (the nearest untrusted hop); every other request
	// to its peer address, whatever headers it sends. Empty trusts no header.
	TrustedProxies []netip.Prefix

	DatabaseURL string
	RedisURL    string
	RedisPrefix string

	S3Endpoint  string // host:port; empty starts the embedded S3 server
	S3AccessKey string
	S3SecretKey string // secret
	S3Bucket    string
	S3Region    string
	S3Secure    bool

	OIDCIssuer       string // empty starts the embedded development OIDC provider
	OIDCClientID     string
	OIDCClientSecret string // secret
	DevOIDCAddr      string // where the embedded provider listens
	StaffMFA         bool   // staff sign-in needs a second factor (acr or amr in the ID token)
	StaffMFAACR      string // the acr that proves a second factor
	// NotifyAllow lists exact ip:port addresses that notification endpoints may resolve to
	// although they are not public (an on-premises receiver); everything else private,
	// loopback or link-local is refused.
	NotifyAllow []netip.AddrPort

	DataDir      string // local state of the embedded servers and generated dev keys
	TokenKey     string // secret: HMAC key for access tokens; empty = generated into DataDir
	AuditKey     string // secret: HMAC key for PHI search terms in audit; empty = generated into DataDir
	TokenTTL     time.Duration
	BreakGlass   time.Duration
	PresignTTL   time.Duration // life of presigned document links; 0 = the mode is off
	MaxBodyBytes int64
	// AuditRetentionYears is how long audit events are kept before `concord audit prune`
	// may drop them: at least 6 (audit.MinRetentionYears, HIPAA's six years).
	AuditRetentionYears int
	// AuditWitness is a file outside the database that each signed audit checkpoint is
	// appended to, for `concord audit verify --witness`; empty writes none.
	AuditWitness string
	LogLevel     string
	DemoSeed     int64
}

// Defaults returns the local defaults that `make demo` uses, so every subcommand run
// without configuration talks to the same services as a running demo.
func Defaults() Config {
	return Config{
		HTTPAddr:            "127.0.0.1:8080",
		BaseURL:             "http://localhost:8080",
		AdminAddr:           "127.0.0.1:9090",
		MLLPAddr:            "127.0.0.1:2575",
		DatabaseURL:         "postgres://postgres@127.0.0.1:5432/concord?sslmode=disable",
		RedisURL:            "redis://127.0.0.1:6379/0",
		RedisPrefix:         "concord:",
		S3Bucket:            "concord-documents",
		S3Region:            "us-east-1",
		OIDCClientID:        "concord-portal",
		DevOIDCAddr:         "127.0.0.1:9998",
		StaffMFA:            true,
		StaffMFAACR:         "http://schemas.openid.net/pape/policies/2007/06/multi-factor",
		DataDir:             ".concord",
		TokenTTL:            300 * time.Second,
		BreakGlass:          60 * time.Minute,
		MaxBodyBytes:        32 << 20,
		AuditRetentionYears: 6,
		LogLevel:            "info",
		DemoSeed:            7,
	}
}

// Var describes one setting: its variable, its flag, and what it means. The README's
// configuration table is generated from Vars.
type Var struct {
	Env, Flag, Help string
	Secret          bool
	get             func(*Config) string
	set             func(*Config, string) error
}

func str(p func(*Config) *string) (func(*Config) string, func(*Config, string) error) {
	return func(c *Config) string { return *p(c) }, func(c *Config, v string) error { *p(c) = v; return nil }
}

func dur(p func(*Config) *time.Duration) (func(*Config) string, func(*Config, string) error) {
	return func(c *Config) string { return p(c).String() }, func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration such as 300s")
		}
		*p(c) = d
		return nil
	}
}

func addr(p func(*Config) *string, allowEmpty bool) (func(*Config) string, func(*Config, string) error) {
	return func(c *Config) string { return *p(c) }, func(c *Config, v string) error {
		if v == "" && allowEmpty {
			*p(c) = v
			return nil
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("want host:port")
		}
		*p(c) = v
		return nil
	}
}

// Vars lists every setting in a stable order.
func Vars() []Var {
	v := func(env, flag, help string, secret bool, g func(*Config) string, s func(*Config, string) error) Var {
		return Var{Env: env, Flag: flag, Help: help, Secret: secret, get: g, set: s}
	}
	var out []Var
	add := func(x Var) { out = append(out, x) }
	{
		g, s := addr(func(c *Config) *string { return &c.HTTPAddr }, false)
		add(v("CONCORD_HTTP_ADDR", "http-addr", "portal and FHIR API listener", false, g, s))
	}
	add(v("CONCORD_BASE_URL", "base-url", "public base URL of the HTTP listener (FHIR base is BASE/fhir)", false,
		func(c *Config) string { return c.BaseURL }, func(c *Config, x string) error {
			u, err := url.Parse(x)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
				return fmt.Errorf("want an absolute http(s) URL")
			}
			c.BaseURL = strings.TrimSuffix(x, "/")
			return nil
		}))
	add(v("CONCORD_TRUSTED_PROXIES", "trusted-proxies", "comma-separated CIDR ranges of the reverse proxies in front of the HTTP listener; only requests from them have their X-Forwarded-For believed (audit source address, rate limits); empty believes no header", false,
		func(c *Config) string {
			out := make([]string, len(c.TrustedProxies))
			for i, p := range c.TrustedProxies {
				out[i] = p.String()
			}
			return strings.Join(out, ",")
		}, func(c *Config, x string) error {
			c.TrustedProxies = nil
			for _, f := range strings.Split(x, ",") {
				if f = strings.TrimSpace(f); f == "" {
					continue
				}
				p, err := netip.ParsePrefix(f)
				if err != nil {
					a, aerr := netip.ParseAddr(f)
					if aerr != nil {
						return fmt.Errorf("want CIDR ranges or addresses separated by commas, e.g. 10.0.0.0/24")
					}
					p = netip.PrefixFrom(a, a.BitLen())
				}
				c.TrustedProxies = append(c.TrustedProxies, p.Masked())
			}
			return nil
		}))
	{
		g, s := addr(func(c *Config) *string { return &c.AdminAddr }, true)
		add(v("CONCORD_ADMIN_ADDR", "admin-addr", "metrics and pprof listener, loopback only; off (or an empty --admin-addr) disables it", false, g, func(c *Config, x string) error {
			if x == "off" { // an empty environment variable reads as unset, so the environment says off
				x = ""
			}
			if err := s(c, x); err != nil || x == "" {
				return err
			}
			host, _, _ := net.SplitHostPort(x)
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				return fmt.Errorf("the admin listener must bind a loopback address")
			}
			return nil
		}))
	}
	{
		g, s := addr(func(c *Config) *string { return &c.MLLPAddr }, true)
		add(v("CONCORD_MLLP_ADDR", "mllp-addr", "HL7 v2 MLLP listener; off (or an empty --mllp-addr) disables it", false, g, func(c *Config, x string) error {
			if x == "off" {
				x = ""
			}
			return s(c, x)
		}))
	}
	for _, f := range []struct {
		env, flag, help string
		p               func(*Config) *string
	}{
		{"CONCORD_MLLP_TLS_CERT", "mllp-tls-cert", "PEM certificate of the MLLP listener (TLS ≥ 1.2)", func(c *Config) *string { return &c.MLLPCertFile }},
		{"CONCORD_MLLP_TLS_KEY", "mllp-tls-key", "PEM private key of the MLLP listener", func(c *Config) *string { return &c.MLLPKeyFile }},
		{"CONCORD_MLLP_CLIENT_CA", "mllp-client-ca", "PEM CA bundle that signs members' MLLP client certificates (required with TLS)", func(c *Config) *string { return &c.MLLPClientCAFile }},
	} {
		g, s := str(f.p)
		add(v(f.env, f.flag, f.help, false, g, s))
	}
	{
		g, s := str(func(c *Config) *string { return &c.DatabaseURL })
		add(v("CONCORD_DATABASE_URL", "database-url", "PostgreSQL URL", true, g, func(c *Config, x string) error {
			if !strings.HasPrefix(x, "postgres://") && !strings.HasPrefix(x, "postgresql://") {
				return fmt.Errorf("want a postgres:// URL")
			}
			return s(c, x)
		}))
	}
	{
		g, s := str(func(c *Config) *string { return &c.RedisURL })
		add(v("CONCORD_REDIS_URL", "redis-url", "Redis URL", true, g, func(c *Config, x string) error {
			if !strings.HasPrefix(x, "redis://") && !strings.HasPrefix(x, "rediss://") {
				return fmt.Errorf("want a redis:// URL")
			}
			return s(c, x)
		}))
	}
	{
		g, s := str(func(c *Config) *string { return &c.RedisPrefix })
		add(v("CONCORD_REDIS_PREFIX", "redis-prefix", "prefix of every Redis key", false, g, s))
	}
	{
		g, s := addr(func(c *Config) *string { return &c.S3Endpoint }, true)
		add(v("CONCORD_S3_ENDPOINT", "s3-endpoint", "S3 host:port; empty starts an embedded S3 server on loopback (data in DATA_DIR)", false, g, s))
	}
	{
		g, s := str(func(c *Config) *string { return &c.S3AccessKey })
		add(v("CONCORD_S3_ACCESS_KEY", "s3-access-key", "S3 access key", false, g, s))
	}
	{
		g, s := str(func(c *Config) *string { return &c.S3SecretKey })
		add(v("CONCORD_S3_SECRET_KEY", "s3-secret-key", "S3 secret key", true, g, s))
	}
	{
		g, s := str(func(c *Config) *string { return &c.S3Bucket })
		add(v("CONCORD_S3_BUCKET", "s3-bucket", "bucket for document bytes (created if missing)", false, g, s))
	}
	{
		g, s := str(func(c *Config) *string { return &c.S3Region })
		add(v("CONCORD_S3_REGION", "s3-region", "S3 region", false, g, s))
	}
	add(v("CONCORD_S3_SECURE", "s3-secure", "use HTTPS to reach S3", false,
		func(c *Config) string { return strconv.FormatBool(c.S3Secure) }, func(c *Config, x string) error {
			b, err := strconv.ParseBool(x)
			if err != nil {
				return fmt.Errorf("want true or false")
			}
			c.S3Secure = b
			return nil
		}))
	{
		g, s := str(func(c *Config) *string { return &c.OIDCIssuer })
		add(v("CONCORD_OIDC_ISSUER", "oidc-issuer", "OIDC issuer URL for portal sign-in; empty starts the embedded development provider", false, g, func(c *Config, x string) error {
			if x != "" {
				if u, err := url.Parse(x); err != nil || u.Host == "" {
					return fmt.Errorf("want an absolute URL")
				}
			}
			return s(c, x)
		}))
	}
	{
		g, s := str(func(c *Config) *string { return &c.OIDCClientID })
		add(v("CONCORD_OIDC_CLIENT_ID", "oidc-client-id", "portal's OIDC client ID", false, g, s))
	}
	{
		g, s := str(func(c *Config) *string { return &c.OIDCClientSecret })
		add(v("CONCORD_OIDC_CLIENT_SECRET", "oidc-client-secret", "portal's OIDC client secret", true, g, s))
	}
	{
		g, s := addr(func(c *Config) *string { return &c.DevOIDCAddr }, false)
		add(v("CONCORD_DEV_OIDC_ADDR", "dev-oidc-addr", "listener of the embedded development OIDC provider", false, g, s))
	}
	add(v("CONCORD_STAFF_MFA", "staff-mfa", "clinicians and privacy officers must sign in with a second factor: the ID token's acr is STAFF_MFA_ACR or its amr has mfa, otp or hwk; false only for a provider that cannot assert one", false,
		func(c *Config) string { return strconv.FormatBool(c.StaffMFA) }, func(c *Config, x string) error {
			b, err := strconv.ParseBool(x)
			if err != nil {
				return fmt.Errorf("want true or false")
			}
			c.StaffMFA = b
			return nil
		}))
	add(v("CONCORD_NOTIFY_ALLOW", "notify-allow", "comma-separated ip:port addresses that subscription endpoints may resolve to although not public (on-premises receivers); empty allows only public addresses", false,
		func(c *Config) string {
			out := make([]string, len(c.NotifyAllow))
			for i, a := range c.NotifyAllow {
				out[i] = a.String()
			}
			return strings.Join(out, ",")
		}, func(c *Config, x string) error {
			c.NotifyAllow = nil
			for _, f := range strings.Split(x, ",") {
				if f = strings.TrimSpace(f); f == "" {
					continue
				}
				ap, err := netip.ParseAddrPort(f)
				if err != nil || ap.Port() == 0 {
					return fmt.Errorf("want ip:port addresses separated by commas, e.g. 10.0.0.5:8443")
				}
				c.NotifyAllow = append(c.NotifyAllow, ap)
			}
			return nil
		}))
	{
		g, s := str(func(c *Config) *string { return &c.StaffMFAACR })
		add(v("CONCORD_STAFF_MFA_ACR", "staff-mfa-acr", "acr value that proves a second factor; staff are asked for it (acr_values) after a refused sign-in", false, g, func(c *Config, x string) error {
			if strings.TrimSpace(x) == "" {
				return fmt.Errorf("want a non-empty acr value")
			}
			return s(c, x)
		}))
	}
	{
		g, s := str(func(c *Config) *string { return &c.DataDir })
		add(v("CONCORD_DATA_DIR", "data-dir", "local state: embedded S3 data, generated development keys", false, g, s))
	}
	{
		g, s := str(func(c *Config) *string { return &c.TokenKey })
		add(v("CONCORD_TOKEN_KEY", "token-key", "HMAC key (≥ 32 bytes) signing access tokens; empty generates one into DATA_DIR", true, g, func(c *Config, x string) error {
			if x != "" && len(x) < 32 {
				return fmt.Errorf("want at least 32 bytes")
			}
			return s(c, x)
		}))
	}
	{
		g, s := str(func(c *Config) *string { return &c.AuditKey })
		add(v("CONCORD_AUDIT_KEY", "audit-key", "HMAC key (≥ 32 bytes) for PHI search terms in audit events; empty generates one into DATA_DIR", true, g, func(c *Config, x string) error {
			if x != "" && len(x) < 32 {
				return fmt.Errorf("want at least 32 bytes")
			}
			return s(c, x)
		}))
	}
	{
		g, s := dur(func(c *Config) *time.Duration { return &c.TokenTTL })
		add(v("CONCORD_TOKEN_TTL", "token-ttl", "lifetime of backend access tokens (at most 300s)", false, g, func(c *Config, x string) error {
			if err := s(c, x); err != nil {
				return err
			}
			if c.TokenTTL > 300*time.Second {
				return fmt.Errorf("at most 300s")
			}
			return nil
		}))
	}
	{
		g, s := dur(func(c *Config) *time.Duration { return &c.BreakGlass })
		add(v("CONCORD_BREAK_GLASS_TTL", "break-glass-ttl", "how long a break-the-glass access lasts (at most 60m)", false, g, func(c *Config, x string) error {
			if err := s(c, x); err != nil {
				return err
			}
			if c.BreakGlass > time.Hour {
				return fmt.Errorf("at most 60m")
			}
			return nil
		}))
	}
	{
		g, s := dur(func(c *Config) *time.Duration { return &c.PresignTTL })
		add(v("CONCORD_PRESIGN_TTL", "presign-ttl", "life of the presigned S3 link GET Binary/{id} answers with (303) when the caller sends Prefer: presigned-url; 0 keeps every retrieval streamed and verified through Concord (at most 15m: the link works for whoever holds it until then)", false, g, func(c *Config, x string) error {
			if err := s(c, x); err != nil {
				return err
			}
			if c.PresignTTL < 0 || c.PresignTTL > 15*time.Minute {
				return fmt.Errorf("between 0 and 15m")
			}
			if c.PresignTTL > 0 && c.PresignTTL < time.Second {
				return fmt.Errorf("0 or at least 1s")
			}
			return nil
		}))
	}
	add(v("CONCORD_MAX_BODY_BYTES", "max-body-bytes", "largest request body accepted; the server holds at most 8 such bodies at once (more wait, then 503; bodies up to 1 MiB are not counted)", false,
		func(c *Config) string { return strconv.FormatInt(c.MaxBodyBytes, 10) }, func(c *Config, x string) error {
			n, err := strconv.ParseInt(x, 10, 64)
			if err != nil || n < 1024 {
				return fmt.Errorf("want a byte count ≥ 1024")
			}
			c.MaxBodyBytes = n
			return nil
		}))
	add(v("CONCORD_AUDIT_RETENTION_YEARS", "audit-retention-years", "years audit events are kept before `concord audit prune` may drop them (at least 6)", false,
		func(c *Config) string { return strconv.Itoa(c.AuditRetentionYears) }, func(c *Config, x string) error {
			n, err := strconv.Atoi(x)
			if err != nil || n < 6 || n > 100 {
				return fmt.Errorf("want a whole number of years from 6 to 100")
			}
			c.AuditRetentionYears = n
			return nil
		}))
	{
		g, s := str(func(c *Config) *string { return &c.AuditWitness })
		add(v("CONCORD_AUDIT_WITNESS", "audit-witness", "file, best on another disk or machine, that `concord serve` appends each signed audit checkpoint to (one JSON a line, fsynced) so `concord audit verify --witness FILE` can detect deleted newest events; the server refuses to start if it cannot open it, and logs a later failed write and keeps auditing; empty writes none", false, g, s))
	}
	add(v("CONCORD_LOG_LEVEL", "log-level", "debug, info, warn or error", false,
		func(c *Config) string { return c.LogLevel }, func(c *Config, x string) error {
			switch x {
			case "debug", "info", "warn", "error":
				c.LogLevel = x
				return nil
			}
			return fmt.Errorf("want debug, info, warn or error")
		}))
	add(v("CONCORD_DEMO_SEED", "demo-seed", "seed of the synthetic demo region", false,
		func(c *Config) string { return strconv.FormatInt(c.DemoSeed, 10) }, func(c *Config, x string) error {
			n, err := strconv.ParseInt(x, 10, 64)
			if err != nil {
				return fmt.Errorf("want an integer")
			}
			c.DemoSeed = n
			return nil
		}))
	return out
}

// Check reports settings that are valid one by one but not together, naming the variable.
func (c Config) Check() error {
	tls := []string{c.MLLPCertFile, c.MLLPKeyFile, c.MLLPClientCAFile}
	set := 0
	for _, x := range tls {
		if x != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		return fmt.Errorf("CONCORD_MLLP_TLS_CERT, CONCORD_MLLP_TLS_KEY and CONCORD_MLLP_CLIENT_CA: set all three or none")
	}
	if c.MLLPAddr != "" && set == 0 {
		host, _, _ := net.SplitHostPort(c.MLLPAddr)
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("CONCORD_MLLP_ADDR: a non-loopback MLLP listener needs TLS with client certificates (CONCORD_MLLP_TLS_CERT, _KEY, CONCORD_MLLP_CLIENT_CA)")
		}
	}
	return nil
}

// Register adds a flag for every setting to fs. Parse must run after fs.Parse.
func Register(fs *flag.FlagSet) map[string]*string {
	vals := map[string]*string{}
	for _, v := range Vars() {
		vals[v.Flag] = fs.String(v.Flag, "", v.Help+" (env "+v.Env+")")
	}
	return vals
}

// Parse builds a Config from Defaults, then the environment (getenv; X_FILE beats X for
// secrets), then the flags that fs saw set. The error is one line naming the variable.
func Parse(fs *flag.FlagSet, flags map[string]*string, getenv func(string) string) (Config, error) {
	c := Defaults()
	set := map[string]bool{}
	if fs != nil {
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	}
	for _, v := range Vars() {
		val, have := "", false
		if v.Secret {
			if p := getenv(v.Env + "_FILE"); p != "" {
				b, err := os.ReadFile(p)
				if err != nil {
					return c, fmt.Errorf("%s_FILE: cannot read %s", v.Env, p)
				}
				val, have = strings.TrimRight(string(b), "\r\n"), true
			}
		}
		if !have {
			if x, ok := lookup(getenv, v.Env); ok {
				val, have = x, true
			}
		}
		if set[v.Flag] {
			val, have = *flags[v.Flag], true
		}
		if !have {
			continue
		}
		if err := v.set(&c, val); err != nil {
			return c, fmt.Errorf("%s (--%s): %v", v.Env, v.Flag, err)
		}
	}
	return c, c.Check()
}

func lookup(getenv func(string) string, k string) (string, bool) {
	v := getenv(k)
	return v, v != ""
}

// Table renders the settings as a Markdown table for the README.
func Table() string {
	var b strings.Builder
	b.WriteString("| variable | flag | default | meaning |\n|---|---|---|---|\n")
	d := Defaults()
	vs := Vars()
	sort.SliceStable(vs, func(i, j int) bool { return false })
	for _, v := range vs {
		def := v.get(&d)
		if v.Secret && def != "" && v.Env != "CONCORD_DATABASE_URL" && v.Env != "CONCORD_REDIS_URL" {
			def = "(set)"
		}
		if def == "" {
			def = "—"
		} else {
			def = "`" + def + "`"
		}
		sec := ""
		if v.Secret {
			sec = " Secret: `" + v.Env + "_FILE` is read first."
		}
		fmt.Fprintf(&b, "| `%s` | `--%s` | %s | %s.%s |\n", v.Env, v.Flag, def, v.Help, sec)
	}
	return b.String()
}
