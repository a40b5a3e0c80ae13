-- The member whose system filed each directive version through the exchange (POST/PUT
-- /fhir/Consent). NULL for directives saved by the portal, an officer or the regional
-- defaults: no member's system may then change them through the exchange. The exchange
-- answers a PUT from any other member like an unknown id (review finding C1).
ALTER TABLE consent_directives ADD COLUMN filed_by_member text;
