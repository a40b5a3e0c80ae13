package config

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParse(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("postgres://file@db/x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		check   func(Config) bool
		wantErr string
	}{
		{"defaults", nil, nil, func(c Config) bool { return reflect.DeepEqual(c, Defaults()) }, ""},
		{"notify allowlist", map[string]string{"CONCORD_NOTIFY_ALLOW": "10.0.0.5:8443, [fd00::1]:443"}, nil,
			func(c Config) bool {
				return len(c.NotifyAllow) == 2 && c.NotifyAllow[0].String() == "10.0.0.5:8443" && c.NotifyAllow[1].String() == "[fd00::1]:443"
			}, ""},
		{"trusted proxies", map[string]string{"CONCORD_TRUSTED_PROXIES": "10.0.0.0/24, 192.0.2.7,fd00::/8"}, nil,
			func(c Config) bool {
				return len(c.TrustedProxies) == 3 && c.TrustedProxies[0].String() == "10.0.0.0/24" &&
					c.TrustedProxies[1].String() == "192.0.2.7/32" && c.TrustedProxies[2].String() == "fd00::/8"
			}, ""},
		{"trusted proxies are ranges", map[string]string{"CONCORD_TRUSTED_PROXIES": "proxy.internal"}, nil, nil, "CONCORD_TRUSTED_PROXIES"},
		{"notify allowlist needs ports", map[string]string{"CONCORD_NOTIFY_ALLOW": "10.0.0.5"}, nil, nil, "CONCORD_NOTIFY_ALLOW"},
		{"env", map[string]string{"CONCORD_DATABASE_URL": "postgres://x@y/z", "CONCORD_TOKEN_TTL": "120s"}, nil,
			func(c Config) bool { return c.DatabaseURL == "postgres://x@y/z" && c.TokenTTL == 120*time.Second }, ""},
		{"flag beats env", map[string]string{"CONCORD_HTTP_ADDR": "127.0.0.1:1"}, []string{"--http-addr", "127.0.0.1:2"},
			func(c Config) bool { return c.HTTPAddr == "127.0.0.1:2" }, ""},
		{"file beats value", map[string]string{"CONCORD_DATABASE_URL": "postgres://env@db/x", "CONCORD_DATABASE_URL_FILE": secret}, nil,
			func(c Config) bool { return c.DatabaseURL == "postgres://file@db/x" }, ""},
		{"bad duration names the variable", map[string]string{"CONCORD_TOKEN_TTL": "soon"}, nil, nil, "CONCORD_TOKEN_TTL"},
		{"token ttl capped", map[string]string{"CONCORD_TOKEN_TTL": "301s"}, nil, nil, "CONCORD_TOKEN_TTL"},
		{"bad url", map[string]string{"CONCORD_DATABASE_URL": "mysql://x"}, nil, nil, "CONCORD_DATABASE_URL"},
		{"admin must be loopback", map[string]string{"CONCORD_ADMIN_ADDR": "0.0.0.0:9090"}, nil, nil, "CONCORD_ADMIN_ADDR"},
		{"mllp tls all or none", map[string]string{"CONCORD_MLLP_TLS_CERT": "/x.pem"}, nil, nil, "CONCORD_MLLP_TLS_CERT"},
		{"public mllp needs tls", map[string]string{"CONCORD_MLLP_ADDR": "0.0.0.0:2575"}, nil, nil, "CONCORD_MLLP_ADDR"},
		{"staff mfa off", map[string]string{"CONCORD_STAFF_MFA": "false"}, nil, func(c Config) bool { return !c.StaffMFA && c.StaffMFAACR != "" }, ""},
		{"staff mfa not a bool", map[string]string{"CONCORD_STAFF_MFA": "sometimes"}, nil, nil, "CONCORD_STAFF_MFA"},
		{"staff mfa acr", nil, []string{"--staff-mfa-acr", "urn:example:mfa"}, func(c Config) bool { return c.StaffMFA && c.StaffMFAACR == "urn:example:mfa" }, ""},
		{"missing secret file", map[string]string{"CONCORD_S3_SECRET_KEY_FILE": filepath.Join(dir, "nope")}, nil, nil, "CONCORD_S3_SECRET_KEY_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			vals := Register(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, err := Parse(fs, vals, env(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("err = %v; want one line starting with %s", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(got) {
				t.Fatalf("Parse = %+v, %v", got, err)
			}
		})
	}
}

func TestTableListsEveryVariable(t *testing.T) {
	tab := Table()
	for _, v := range Vars() {
		if !strings.Contains(tab, "`"+v.Env+"`") || !strings.Contains(tab, "`--"+v.Flag+"`") {
			t.Errorf("table misses %s", v.Env)
		}
	}
}

// TestListenersOff: "off" in the environment disables the admin and MLLP listeners (an
// empty variable reads as unset, so it cannot).
func TestListenersOff(t *testing.T) {
	env := map[string]string{"CONCORD_ADMIN_ADDR": "off", "CONCORD_MLLP_ADDR": "off"}
	c, err := Parse(nil, nil, func(k string) string { return env[k] })
	if err != nil || c.AdminAddr != "" || c.MLLPAddr != "" {
		t.Fatalf("admin %q, mllp %q, %v; want both off", c.AdminAddr, c.MLLPAddr, err)
	}
}

// TestREADMEHasTable keeps the README's configuration table true.
func TestREADMEHasTable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), Table()) {
		t.Fatal("README.md's configuration table is out of date: paste config.Table() into it")
	}
}
