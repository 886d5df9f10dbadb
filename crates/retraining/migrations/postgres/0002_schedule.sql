-- Schedule triggers: every fire time of a policy's schedule at or before
-- `schedule_handled_until` (ms) is handled (started, refused by the cooldown, or folded
-- into one catch-up retrain). A replica moves it by a compare-and-set in the transaction
-- that starts the retrain, so two replicas cannot both start one fire; setting a new
-- schedule moves it to that time. Existing policies count from their last change.
ALTER TABLE retraining_policies ADD COLUMN schedule_handled_until BIGINT NOT NULL DEFAULT 0;
UPDATE retraining_policies SET schedule_handled_until = updated_at;
