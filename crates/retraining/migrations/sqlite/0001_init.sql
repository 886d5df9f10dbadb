-- Policies: one per registered model, the policy as protobuf; `last_started_at` is the
-- cooldown's clock (moved by a compare-and-set, so two replicas cannot both start one).
CREATE TABLE retraining_policies (
    model TEXT PRIMARY KEY,
    policy BLOB NOT NULL,
    version BIGINT NOT NULL,
    last_started_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Retrains: the persisted state machine. The policy is copied in, so changing it does
-- not change a retrain under way. `active` is 1 until a terminal state; `owner` and
-- `lease_until` say which replica drives it (a lease another takes over when it runs out).
CREATE TABLE retraining_retrains (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    state TEXT NOT NULL,
    active BIGINT NOT NULL,
    trigger_kind TEXT NOT NULL,
    trigger_detail TEXT NOT NULL,
    policy BLOB NOT NULL,
    policy_version BIGINT NOT NULL,
    run_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    champion_version BIGINT NOT NULL,
    reason TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    facts TEXT NOT NULL,
    owner TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX retraining_retrains_model ON retraining_retrains (model, created_at);
CREATE INDEX retraining_retrains_active ON retraining_retrains (active, lease_until);

-- Every transition of a retrain, in order.
CREATE TABLE retraining_transitions (
    retrain_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (retrain_id, seq)
);
