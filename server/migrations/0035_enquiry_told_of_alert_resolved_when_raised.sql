-- An alert can be stored already resolved: an episode that began and ended between two detection
-- runs (after a collector outage, a gateway's spool delivered late, a back-run), or one on a meter
-- taken out since. Its enquiry was raised (alerts_raise_enquiry) but only told of a resolution on
-- an UPDATE of the status: an urgent burst's enquiry never heard that the flow had stopped.
-- (Triggers of one event fire in name order: the enquiry is raised first.)
CREATE TRIGGER alerts_resolved_when_raised AFTER INSERT ON alerts
    FOR EACH ROW WHEN (NEW.status = 'resolved')
    EXECUTE FUNCTION note_alert_change_on_enquiry();
