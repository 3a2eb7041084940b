-- Daily consumption per DMA: the sum of the maintained hourly totals (24 rows a day per DMA, so a
-- view is enough; UTC days like consumption_daily).
CREATE VIEW dma_consumption_daily AS
SELECT dma, date_bin('1 day', hour, '2000-01-01T00:00:00Z') AS day, sum(consumption_m3) AS consumption_m3,
       max(meters) AS meters, sum(not_actual) AS not_actual, sum(unknown) AS unknown
FROM dma_consumption_hourly
GROUP BY 1, 2;
