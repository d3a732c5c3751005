package access

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
)

// legacyFile is the tokens.json of versions before users existed: tokens
// with a name and a role each.
type legacyFile struct {
	Tokens []struct {
		ID      string    `json:"id"`
		Name    string    `json:"name"`
		Role    Role      `json:"role"`
		Hash    string    `json:"sha256"`
		Created time.Time `json:"created"`
	} `json:"tokens"`
}

// ImportedSuffix is appended to a legacy token file's name once imported.
const ImportedSuffix = ".imported"

// importLegacy moves the tokens of a legacy token file into the database:
// each token's name becomes a user with the token's role (no password), and
// the token keeps working because the stored SHA-256 scheme is the same.
// Then the file is renamed so that it is imported once.
//
// The order is commit, then rename: a crash between the two imports the
// file again at the next open, which changes nothing because every insert
// skips what is already there.
func (s *Store) importLegacy(ctx context.Context, path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("access: legacy token file: %w", err)
	}
	var f legacyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("access: legacy token file %s is not a token file (fix or remove it): %w", path, err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("access: import %s: %w", path, err)
	}
	defer tx.Rollback()
	imported, users := 0, map[string]bool{}
	for i, t := range f.Tokens {
		h := strings.ToLower(t.Hash)
		if _, err := hex.DecodeString(h); err != nil || len(h) != 64 || !t.Role.Valid() {
			s.log.Warn("legacy token skipped: unreadable hash or unknown role", "file", path, "index", i, "role", t.Role)
			continue
		}
		var exists int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM access_tokens WHERE hash = ?`, h).Scan(&exists); err != nil {
			return fmt.Errorf("access: import %s: %w", path, err)
		}
		if exists > 0 {
			continue // imported before a crash stopped the rename
		}
		name, err := s.legacyUser(ctx, tx, legacyName(t.Name, h), t.Role, t.Created)
		if err != nil {
			return fmt.Errorf("access: import %s: token %d: %w", path, i, err)
		}
		created := t.Created
		if created.IsZero() {
			created = time.Now()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO access_tokens (hash, id, user, created) VALUES (?, ?, ?, ?)`,
			h, h[:12], name, created.UnixNano()); err != nil {
			return fmt.Errorf("access: import %s: %w", path, err)
		}
		imported++
		users[name] = true
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("access: import %s: %w", path, err)
	}
	done := path + ImportedSuffix
	if err := os.Rename(path, done); err != nil && !errors.Is(err, os.ErrNotExist) { // another process renamed it first
		return fmt.Errorf("access: imported %s but could not rename it: %w", path, err)
	}
	// The rename is what marks the import done: make it durable.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	s.log.Info("imported API tokens from a legacy token file as users; their secrets keep working",
		"file", path, "tokens", imported, "users", len(users), "renamed_to", done)
	return nil
}

// legacyUser returns the user a legacy token belongs to, creating it. A name
// already taken by a user with another role gets the role appended.
func (s *Store) legacyUser(ctx context.Context, tx *sql.Tx, name string, role Role, created time.Time) (string, error) {
	for _, candidate := range []string{name, truncate(name, MaxNameLength-len(role)-1) + "-" + string(role)} {
		var existing, existingRole string
		err := tx.QueryRowContext(ctx, `SELECT name, role FROM access_users WHERE name = ?`, candidate).Scan(&existing, &existingRole)
		if err == nil {
			if Role(existingRole) == role {
				return existing, nil
			}
			continue
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return "", err
		}
		if created.IsZero() {
			created = time.Now()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO access_users (name, role, created) VALUES (?, ?, ?)`,
			candidate, string(role), created.UnixNano()); err != nil {
			return "", err
		}
		if candidate != name {
			s.log.Warn("legacy token's name is taken by a user with another role: imported under another name",
				"name", name, "role", role, "user", candidate)
		}
		return candidate, nil
	}
	return "", fmt.Errorf("user %q exists with another role, and so does %q", name, name+"-"+string(role))
}

// legacyName turns a legacy token name (any text up to 128 characters) into
// a valid user name.
func legacyName(name, h string) string {
	name = strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune(" ._-@", r) {
			return r
		}
		return '_'
	}, name)
	name = strings.TrimSpace(truncate(strings.TrimSpace(name), MaxNameLength))
	if name == "" {
		name = "token-" + h[:12]
	}
	return name
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n])
	}
	return s
}
