-- Version 8 is reserved for the pull connectors' runtime (branch `pull`):
-- migrations must be numbered without gaps, and the calendar projection
-- (0009) was written beside it. When the branches meet, the pull branch's
-- 0008 replaces this file.
SELECT 1;
