-- What VEE needs to know about a meter, and the index for per-DMA work.
-- NULL means "use the configured default" (collector/vee/config.py).
ALTER TABLE meters
    ADD COLUMN max_flow_m3h         numeric CHECK (max_flow_m3h > 0),          -- Q4 of the meter's size
    ADD COLUMN register_capacity_m3 numeric CHECK (register_capacity_m3 > 0);  -- where the register rolls over to 0

CREATE INDEX meters_dma_idx ON meters (dma) WHERE dma IS NOT NULL;
