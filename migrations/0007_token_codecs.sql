-- Schema version 7 (segment format v4): codes-only token storage.
--
-- A collection created WITH (tokens = 'plaid1' | 'plaid2' | 'plaid4') keeps each token as
-- a centroid id plus residual codes. The codec (centroids, bucket cut-offs and weights) is
-- trained on the collection's own tokens when it first has enough of them and is stored
-- as a state file (`segments/<c>/codec<n>.tokens`, a checksummed container); every
-- codes-only segment names the codec it needs (its CODEC_REF section: this row's id and
-- `content_sum`). The newest row of a collection encodes new segments; VACUUM retrains
-- (a new row) when the quantisation error of data encoded since training drifts, and
-- rewrites every segment with it; a row no segment needs any more is deleted and its file
-- retired. `segments.quant_error` is the mean 1 − cos(x, decode(encode(x))) over the
-- tokens a flush encoded from vectors (NULL: copied codes, or vectors stored).

CREATE TABLE token_codecs (
    id             INTEGER PRIMARY KEY,
    collection_id  INTEGER NOT NULL,
    file           TEXT    NOT NULL,
    content_sum    INTEGER NOT NULL,
    nbits          INTEGER NOT NULL,
    centroids      INTEGER NOT NULL,
    trained_tokens INTEGER NOT NULL,
    train_error    REAL    NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX token_codecs_by_collection ON token_codecs(collection_id);

ALTER TABLE segments ADD COLUMN quant_error REAL;
