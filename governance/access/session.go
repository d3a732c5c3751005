package access

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// SessionCookie is the name of the cookie that carries a web session's
// secret.
const SessionCookie = "vigil_session"

// touchEvery is how stale a session's last-seen time may get before a
// request writes it again. Writing it on every request would put an fsync on
// every page load; this makes the idle timeout accurate to within a minute.
const touchEvery = time.Minute

// Login checks a user's password and opens a web session, returning its
// secret (for the cookie, shown nowhere else) and who logged in.
//
// A wrong password, an unknown user and a user without a password all get
// ErrLoginFailed and take the same time. After Options.LockoutFailures
// failures for one name within LockoutWindow, logins for that name are
// refused with a *LockedOutError for LockoutDuration, without checking the
// password. Names that are not users count too, so the lockout does not tell
// which names exist. A disabled user with the right password gets
// ErrDisabled.
func (s *Store) Login(ctx context.Context, name, password string, now time.Time) (string, Principal, error) {
	if ValidName(name) != nil || password == "" || len(password) > MaxPasswordLength {
		return "", Principal{}, ErrLoginFailed
	}
	if until, locked, err := s.lockedUntil(ctx, name, now); err != nil {
		return "", Principal{}, err
	} else if locked {
		return "", Principal{}, &LockedOutError{Until: until}
	}

	p := Principal{Via: ViaSession}
	var role, phc string
	var disabled bool
	err := s.db.QueryRowContext(ctx, `SELECT name, role, wearer, password, disabled != 0 FROM access_users WHERE name = ?`, name).
		Scan(&p.Name, &role, &p.Wearer, &phc, &disabled)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", Principal{}, fmt.Errorf("access: login: %w", err)
	}
	p.Role = Role(role)
	ok, params, err := s.verify(ctx, phc, password)
	if err != nil {
		return "", Principal{}, err
	}
	if !ok {
		return "", Principal{}, s.failed(ctx, name, now)
	}
	if disabled {
		return "", Principal{}, fmt.Errorf("%w: %s", ErrDisabled, p.Name)
	}

	// Re-hash with the current parameters while the password is at hand.
	var rehash string
	if params != s.opts.Hash {
		if rehash, err = s.hash(ctx, password); err != nil {
			return "", Principal{}, err
		}
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", Principal{}, fmt.Errorf("access: login: %w", err)
	}
	secret := base64.RawURLEncoding.EncodeToString(raw)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", Principal{}, fmt.Errorf("access: login: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM access_login_failures WHERE name = ?`, p.Name); err != nil {
		return "", Principal{}, fmt.Errorf("access: login: %w", err)
	}
	// Sessions that have ended are removed here rather than by a sweeper:
	// logins are rare, and Session refuses expired ones anyway.
	if _, err := tx.ExecContext(ctx, `DELETE FROM access_sessions WHERE created <= ? OR last_seen <= ?`,
		now.Add(-s.opts.SessionMax).UnixNano(), now.Add(-s.opts.SessionIdle).UnixNano()); err != nil {
		return "", Principal{}, fmt.Errorf("access: login: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO access_sessions (hash, user, created, last_seen) VALUES (?, ?, ?, ?)`,
		hash(secret), p.Name, now.UnixNano(), now.UnixNano()); err != nil {
		return "", Principal{}, fmt.Errorf("access: login: %w", err)
	}
	if rehash != "" {
		// Only if the hash is still the one just verified: a concurrent
		// SetPassword wins.
		if _, err := tx.ExecContext(ctx, `UPDATE access_users SET password = ? WHERE name = ? AND password = ?`, rehash, p.Name, phc); err != nil {
			return "", Principal{}, fmt.Errorf("access: login: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return "", Principal{}, fmt.Errorf("access: login: %w", err)
	}
	return secret, p, nil
}

// verify checks password against phc. With no usable hash (no such user, no
// password set) it hashes against a throwaway hash, so that the answer takes
// as long as a real one and does not reveal which names exist.
func (s *Store) verify(ctx context.Context, phc, password string) (bool, HashParams, error) {
	if err := s.acquire(ctx); err != nil {
		return false, HashParams{}, err
	}
	defer s.release()
	if phc != "" {
		ok, params, err := verifyPassword(phc, password)
		if err == nil {
			return ok, params, nil
		}
		s.log.Error("a stored password hash is unusable: set the password again", "err", err)
	}
	// One argon2id computation, as a verification is.
	if _, err := hashPassword(password, s.opts.Hash); err != nil {
		return false, s.opts.Hash, err
	}
	return false, s.opts.Hash, nil
}

// lockedUntil reports whether name is locked out at now, and until when.
func (s *Store) lockedUntil(ctx context.Context, name string, now time.Time) (time.Time, bool, error) {
	var until int64
	err := s.db.QueryRowContext(ctx, `SELECT until FROM access_lockouts WHERE name = ? AND until > ?`, name, now.UnixNano()).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("access: login: %w", err)
	}
	return time.Unix(0, until), true, nil
}

// failed records a failed login for name and returns the error to give:
// ErrLoginFailed, or a *LockedOutError when this failure reaches the limit.
func (s *Store) failed(ctx context.Context, name string, now time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("access: login: %w", err)
	}
	defer tx.Rollback()
	since := now.Add(-s.opts.LockoutWindow).UnixNano()
	// Old failures and ended lockouts of every name go here, which bounds
	// the tables by the rate of attempts.
	if _, err := tx.ExecContext(ctx, `DELETE FROM access_login_failures WHERE at <= ?`, since); err != nil {
		return fmt.Errorf("access: login: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM access_lockouts WHERE until <= ?`, now.UnixNano()); err != nil {
		return fmt.Errorf("access: login: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO access_login_failures (name, at) VALUES (?, ?)`, name, now.UnixNano()); err != nil {
		return fmt.Errorf("access: login: %w", err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM access_login_failures WHERE name = ?`, name).Scan(&n); err != nil {
		return fmt.Errorf("access: login: %w", err)
	}
	result := ErrLoginFailed
	if n >= s.opts.LockoutFailures {
		until := now.Add(s.opts.LockoutDuration)
		if _, err := tx.ExecContext(ctx, `INSERT INTO access_lockouts (name, until) VALUES (?, ?)
			ON CONFLICT (name) DO UPDATE SET until = excluded.until`, name, until.UnixNano()); err != nil {
			return fmt.Errorf("access: login: %w", err)
		}
		// The count starts again when the lockout ends.
		if _, err := tx.ExecContext(ctx, `DELETE FROM access_login_failures WHERE name = ?`, name); err != nil {
			return fmt.Errorf("access: login: %w", err)
		}
		s.log.Warn("logins locked out after repeated failures", "user", name, "failures", n, "until", until.UTC())
		result = &LockedOutError{Until: until}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("access: login: %w", err)
	}
	return result
}

// Session returns who holds a web session and extends its idle timeout.
// Sessions unused for Options.SessionIdle, older than SessionMax, or of a
// user since disabled get ErrNoSession and are deleted.
func (s *Store) Session(ctx context.Context, secret string, now time.Time) (Principal, error) {
	if len(secret) != base64.RawURLEncoding.EncodedLen(32) {
		return Principal{}, ErrNoSession
	}
	h := hash(secret)
	p := Principal{Via: ViaSession}
	var role string
	var created, lastSeen int64
	var disabled bool
	err := s.db.QueryRowContext(ctx, `SELECT u.name, u.role, u.wearer, u.disabled != 0, s.created, s.last_seen
		FROM access_sessions s JOIN access_users u ON u.name = s.user WHERE s.hash = ?`, h).
		Scan(&p.Name, &role, &p.Wearer, &disabled, &created, &lastSeen)
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, ErrNoSession
	}
	if err != nil {
		return Principal{}, fmt.Errorf("access: session: %w", err)
	}
	p.Role = Role(role)
	t := now.UnixNano()
	if disabled || t >= created+int64(s.opts.SessionMax) || t >= lastSeen+int64(s.opts.SessionIdle) {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM access_sessions WHERE hash = ?`, h); err != nil {
			return Principal{}, fmt.Errorf("access: session: %w", err)
		}
		return Principal{}, ErrNoSession
	}
	if t-lastSeen >= int64(min(touchEvery, s.opts.SessionIdle/2)) {
		if _, err := s.db.ExecContext(ctx, `UPDATE access_sessions SET last_seen = ? WHERE hash = ? AND last_seen < ?`, t, h, t); err != nil {
			return Principal{}, fmt.Errorf("access: session: %w", err)
		}
	}
	return p, nil
}

// Logout ends a web session. Ending one that does not exist is not an error.
func (s *Store) Logout(ctx context.Context, secret string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM access_sessions WHERE hash = ?`, hash(secret)); err != nil {
		return fmt.Errorf("access: logout: %w", err)
	}
	return nil
}
