package schema

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func openDB(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "v.db"), 0o600, nil)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func version(t *testing.T, db *bolt.DB) int {
	t.Helper()
	var v int
	require.NoError(t, db.View(func(tx *bolt.Tx) error { var err error; v, err = Version(tx); return err }))
	return v
}

func steps(ran *[]string) []Migration {
	return []Migration{
		State()[0],
		{Name: "rename", Up: func(tx *bolt.Tx) error {
			*ran = append(*ran, "rename")
			old := tx.Bucket([]byte("alerts"))
			nb, err := tx.CreateBucket([]byte("alerts-v2"))
			if err != nil {
				return err
			}
			if err := old.ForEach(func(k, v []byte) error { return nb.Put(k, v) }); err != nil {
				return err
			}
			return tx.DeleteBucket([]byte("alerts"))
		}},
	}
}

func TestUnversionedRunsEveryStep(t *testing.T) {
	db := openDB(t)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("alerts"))
		if err != nil {
			return err
		}
		return b.Put([]byte("a1"), []byte("duress"))
	}))
	var ran []string
	var logs bytes.Buffer
	require.NoError(t, Migrate(db, "vigil.db", steps(&ran), slog.New(slog.NewTextHandler(&logs, nil))))
	assert.Equal(t, []string{"rename"}, ran)
	assert.Equal(t, 2, version(t, db))
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		assert.Equal(t, "duress", string(tx.Bucket([]byte("alerts-v2")).Get([]byte("a1"))))
		return nil
	}))
	assert.Contains(t, logs.String(), "from=0 to=1")
	assert.Contains(t, logs.String(), "from=1 to=2 step=rename")

	ran = nil
	require.NoError(t, Migrate(db, "vigil.db", steps(&ran), nil))
	assert.Empty(t, ran, "a current database runs nothing")
}

func TestFreshIsStampedAndFailedStepRollsBack(t *testing.T) {
	db := openDB(t)
	var ran []string
	require.NoError(t, Migrate(db, "vigil.db", steps(&ran), nil))
	assert.Empty(t, ran)
	assert.Equal(t, 2, version(t, db))

	db2 := openDB(t)
	require.NoError(t, db2.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("journal")); return err }))
	failing := []Migration{State()[0], {Name: "breaks", Up: func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket([]byte("half")); err != nil {
			return err
		}
		return errors.New("boom")
	}}}
	err := Migrate(db2, "vigil.db", failing, nil)
	require.ErrorContains(t, err, "vigil.db: migration 2 (breaks): boom")
	assert.Equal(t, 1, version(t, db2), "the failed step is not recorded")
	require.NoError(t, db2.View(func(tx *bolt.Tx) error {
		assert.Nil(t, tx.Bucket([]byte("half")), "nor is any of its work")
		return nil
	}))
}

func TestNewerIsRefused(t *testing.T) {
	db := openDB(t)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { return SetVersion(tx, 5) }))
	err := Migrate(db, "vigil.db", State(), nil)
	var tooNew *TooNewError
	require.ErrorAs(t, err, &tooNew)
	assert.Equal(t, "vigil.db: state written by a newer vigil (schema 5, this build knows 1); upgrade vigil or restore a backup", err.Error())
	assert.Equal(t, 5, version(t, db))
}

// FuzzVersion: whatever the meta bucket holds, Version returns a
// non-negative number or an error naming the value, and never panics.
func FuzzVersion(f *testing.F) {
	for _, seed := range []string{"1", "0", "12", "-1", "", "1.0", " 1", "99999999999999999999", "x"} {
		f.Add([]byte(seed))
	}
	db, err := bolt.Open(filepath.Join(f.TempDir(), "v.db"), 0o600, nil)
	require.NoError(f, err)
	f.Cleanup(func() { db.Close() })
	f.Fuzz(func(t *testing.T, raw []byte) {
		require.NoError(t, db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			return b.Put(keySchema, raw)
		}))
		require.NoError(t, db.View(func(tx *bolt.Tx) error {
			v, err := Version(tx)
			if err != nil {
				assert.Contains(t, err.Error(), "not a version number")
				return nil
			}
			assert.GreaterOrEqual(t, v, 0)
			assert.Equal(t, string(raw), strconv.Itoa(v), "only a plain decimal is a version")
			return nil
		}))
	})
}
