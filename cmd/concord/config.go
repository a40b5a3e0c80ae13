package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/concord-hie/concord/internal/config"
)

// parseConfig parses a subcommand's flags (the shared settings plus its own, which extra
// registers) and returns the configuration. Help lists every flag with its variable.
func parseConfig(name, synopsis string, args []string, stderr io.Writer, extra func(fs *flag.FlagSet)) (config.Config, *flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: concord %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	if extra != nil {
		extra(fs)
	}
	vals := config.Register(fs)
	if err := fs.Parse(args); err != nil {
		return config.Config{}, fs, err
	}
	cfg, err := config.Parse(fs, vals, os.Getenv)
	if err != nil {
		return cfg, fs, err
	}
	return cfg, fs, nil
}

// secretKey returns the configured secret, or a random one kept in DataDir/name so a
// development install keeps its keys across restarts. Production sets the variable.
func secretKey(cfg config.Config, configured, name string) ([]byte, error) {
	if configured != "" {
		return []byte(configured), nil
	}
	p := filepath.Join(cfg.DataDir, "keys", name)
	if b, err := os.ReadFile(p); err == nil {
		k, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(k) < 32 {
			return nil, fmt.Errorf("%s is not a hex key of at least 32 bytes", p)
		}
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		return nil, err
	}
	return k, nil
}

// auditSigningKey derives the Ed25519 checkpoint-signing key from a 32-byte seed.
func auditSigningKey(cfg config.Config) (ed25519.PrivateKey, error) {
	seed, err := secretKey(cfg, "", "audit-checkpoint.seed")
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed[:32]), nil
}
