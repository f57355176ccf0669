"""The read side's SQL migrations, `NNNN_name.sql`, applied in order by `projections.migrate`."""
