package db

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/internal/errs"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migration is one numbered, embedded .sql file.
type Migration struct {
	Version  int
	Name     string
	SQL      string
	Checksum string // hex SHA-256 of SQL
}

// Migrations returns the embedded migrations in version order. File names are
// NNNN_name.sql; a malformed name or a repeated number is a programming error and panics.
func Migrations() []Migration {
	ents, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		panic(err)
	}
	var ms []Migration
	seen := map[int]string{}
	for _, e := range ents {
		name := e.Name()
		num, rest, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(rest, ".sql") {
			panic("db: malformed migration name " + name)
		}
		if prev, dup := seen[v]; dup {
			panic(fmt.Sprintf("db: migrations %s and %s share number %d", prev, name, v))
		}
		seen[v] = name
		b, err := migrationFS.ReadFile("migrations/" + name)
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(b)
		ms = append(ms, Migration{Version: v, Name: strings.TrimSuffix(rest, ".sql"), SQL: string(b), Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms
}

const migrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	checksum   text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// migrateLock is the advisory lock key that serializes concurrent migrators.
const migrateLock = 0x636f6e636f7264 // "concord"

// Migrate applies every pending migration, each in its own transaction, recording its
// version and checksum. It holds an advisory lock so replicas can start together. It
// returns the versions applied, and errs.Conflict if an applied file was edited since.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	const op = "db.Migrate"
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, Map(op, err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLock); err != nil {
		return nil, Map(op, err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrateLock)
	if _, err := conn.Exec(ctx, migrationsTable); err != nil {
		return nil, Map(op, err)
	}
	applied, err := appliedMigrations(ctx, conn)
	if err != nil {
		return nil, err
	}
	var done []int
	for _, m := range Migrations() {
		if sum, ok := applied[m.Version]; ok {
			if sum != m.Checksum {
				return done, errs.E(op, errs.Conflict, fmt.Sprintf("migration %04d_%s was edited after it was applied", m.Version, m.Name))
			}
			continue
		}
		err := InTx(ctx, conn, func(tx Querier) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return errs.E(op, errs.Internal, fmt.Sprintf("migration %04d_%s failed", m.Version, m.Name), err)
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations(version, name, checksum) VALUES ($1, $2, $3)", m.Version, m.Name, m.Checksum)
			return err
		})
		if err != nil {
			return done, err
		}
		done = append(done, m.Version)
	}
	return done, nil
}

func appliedMigrations(ctx context.Context, q Querier) (map[int]string, error) {
	rows, err := q.Query(ctx, "SELECT version, checksum FROM schema_migrations")
	if err != nil {
		return nil, Map("db.appliedMigrations", err)
	}
	m, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct {
		v   int
		sum string
	}, error) {
		var x struct {
			v   int
			sum string
		}
		err := r.Scan(&x.v, &x.sum)
		return x, err
	})
	if err != nil {
		return nil, Map("db.appliedMigrations", err)
	}
	out := make(map[int]string, len(m))
	for _, x := range m {
		out[x.v] = x.sum
	}
	return out, nil
}

// CheckSchema reports whether the database has exactly the embedded migrations applied.
// It returns errs.Unavailable naming `concord migrate` when the schema is behind, and
// errs.Conflict when an applied migration was edited or the database is ahead of this binary.
func CheckSchema(ctx context.Context, q Querier) error {
	const op = "db.CheckSchema"
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return Map(op, err)
	}
	if !exists {
		return errs.E(op, errs.Unavailable, "the database schema is empty: run `concord migrate`")
	}
	applied, err := appliedMigrations(ctx, q)
	if err != nil {
		return err
	}
	known := map[int]bool{}
	var behind []string
	for _, m := range Migrations() {
		known[m.Version] = true
		sum, ok := applied[m.Version]
		if !ok {
			behind = append(behind, fmt.Sprintf("%04d", m.Version))
			continue
		}
		if sum != m.Checksum {
			return errs.E(op, errs.Conflict, fmt.Sprintf("migration %04d_%s was edited after it was applied", m.Version, m.Name))
		}
	}
	if len(behind) > 0 {
		return errs.E(op, errs.Unavailable, fmt.Sprintf("the database schema is behind (missing %s): run `concord migrate`", strings.Join(behind, ", ")))
	}
	for v := range applied {
		if !known[v] {
			return errs.E(op, errs.Conflict, fmt.Sprintf("the database has migration %04d that this binary does not know: upgrade concord", v))
		}
	}
	return nil
}

// EnsureDatabase creates the database named in url when it does not exist, connecting to
// the server's "postgres" database to do so. It is for local and demo use.
func EnsureDatabase(ctx context.Context, url string) error {
	const op = "db.EnsureDatabase"
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return errs.E(op, errs.Invalid, "malformed database URL", err)
	}
	name := cfg.Database
	if name == "" || name == "postgres" {
		return nil
	}
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return errs.E(op, errs.Unavailable, "database unavailable", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return Map(op, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if err != nil && errs.CodeOf(Map(op, err)) != errs.Conflict {
		return Map(op, err)
	}
	return nil
}
