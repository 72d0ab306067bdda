//! Historian: readings from the tenant's MQTT cluster into PostgreSQL.
