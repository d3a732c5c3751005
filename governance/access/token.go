package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-gw/vigil/evidence/sqlitedb"
)

// TokenPrefix marks Vigil API tokens so that secret scanners can find leaked
// ones.
const TokenPrefix = "vgl_"

// Token is a stored API token: never the secret itself. Its role is its
// user's role at the time it is used.
type Token struct {
	ID      string    `json:"id"`   // first characters of the hash: safe to show and log
	User    string    `json:"user"` // the user it acts as
	Role    Role      `json:"role"`
	Created time.Time `json:"created"`
}

// hash is the SHA-256 of a token or session secret, as stored. A fast hash is
// enough: the secrets are random, 160 or 256 bits, not guessable passwords.
func hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func newTokenSecret() (string, error) {
	raw := make([]byte, 20)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("access: %w", err)
	}
	return TokenPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw)), nil
}

// CreateToken makes an API token for a user, stores its hash and returns the
// secret, which is not kept anywhere: show it once.
func (s *Store) CreateToken(ctx context.Context, name string, now time.Time) (string, Token, error) {
	secret, err := newTokenSecret()
	if err != nil {
		return "", Token{}, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", Token{}, fmt.Errorf("access: create token: %w", err)
	}
	defer tx.Rollback()
	t, err := insertToken(ctx, tx, name, hash(secret), now)
	if err != nil {
		return "", Token{}, err
	}
	if err := tx.Commit(); err != nil {
		return "", Token{}, fmt.Errorf("access: create token for %s: %w", name, err)
	}
	return secret, t, nil
}

// insertToken stores a token hash for user name inside tx, refusing unknown
// and disabled users.
func insertToken(ctx context.Context, tx *sql.Tx, name, h string, now time.Time) (Token, error) {
	t := Token{ID: h[:12], Created: time.Unix(0, now.UnixNano()).UTC()}
	var role string
	var disabled bool
	err := tx.QueryRowContext(ctx, `SELECT name, role, disabled != 0 FROM access_users WHERE name = ?`, name).Scan(&t.User, &role, &disabled)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("%w: %s", ErrNoUser, name)
	}
	if err != nil {
		return Token{}, fmt.Errorf("access: create token for %s: %w", name, err)
	}
	if disabled {
		return Token{}, fmt.Errorf("%w: %s", ErrDisabled, t.User)
	}
	t.Role = Role(role)
	if _, err := tx.ExecContext(ctx, `INSERT INTO access_tokens (hash, id, user, created) VALUES (?, ?, ?, ?)`,
		h, t.ID, t.User, now.UnixNano()); err != nil {
		return Token{}, fmt.Errorf("access: create token for %s: %w", name, err)
	}
	return t, nil
}

// Tokens lists the stored tokens (never secrets), oldest first.
func (s *Store) Tokens(ctx context.Context) ([]Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT t.id, t.user, u.role, t.created
		FROM access_tokens t JOIN access_users u ON u.name = t.user ORDER BY t.created, t.id`)
	if err != nil {
		return nil, fmt.Errorf("access: tokens: %w", err)
	}
	list, err := sqlitedb.Collect(rows, func(sc sqlitedb.Scanner) (t Token, err error) {
		var role string
		var created int64
		err = sc.Scan(&t.ID, &t.User, &role, &created)
		t.Role, t.Created = Role(role), time.Unix(0, created).UTC()
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("access: tokens: %w", err)
	}
	return list, nil
}

// RevokeToken deletes a token by its ID: it is refused from the next request.
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM access_tokens WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("access: revoke token %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", ErrNoToken, id)
	}
	return nil
}

// Authenticate returns who holds the presented API token. Unknown and
// revoked tokens get ErrUnknown, tokens of disabled users ErrDisabled.
//
// The lookup is by the secret's SHA-256 through the index. Its timing can at
// most tell an attacker about hashes of secrets they chose, which does not
// help them find a stored token's secret.
func (s *Store) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if !strings.HasPrefix(secret, TokenPrefix) {
		return Principal{}, ErrUnknown
	}
	p := Principal{Via: ViaToken}
	var role string
	var disabled bool
	err := s.db.QueryRowContext(ctx, `SELECT t.id, u.name, u.role, u.wearer, u.disabled != 0
		FROM access_tokens t JOIN access_users u ON u.name = t.user WHERE t.hash = ?`, hash(secret)).
		Scan(&p.TokenID, &p.Name, &role, &p.Wearer, &disabled)
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, ErrUnknown
	}
	if err != nil {
		return Principal{}, fmt.Errorf("access: authenticate: %w", err)
	}
	if disabled {
		return Principal{}, fmt.Errorf("%w: %s", ErrDisabled, p.Name)
	}
	p.Role = Role(role)
	return p, nil
}
