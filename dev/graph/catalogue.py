"""A tenant's Secure Score, as Microsoft Graph returns it: 300 control profiles with the real id styles
(`AdminMFAV2`, `aad_*`, `mdo_*`, Defender for Endpoint `scid_*`, Defender for Cloud Apps
`11770.MDA_Google_*`), HTML remediation, `"Unknown"`/null costs and display-string threats, and 90 daily
snapshots whose `controlScores` carry the undocumented fields real tenants return. As in real tenants, the
profiles are every control Microsoft has, whatever the licences, and only 120 of them are scored for this tenant
(one tenant measured 244 control scores against 462 profiles; docs/design.md#microsoft-graph-facts). Older snapshots have
`description: null` and lack `lastSynced`, `count`, `total` and `on`, as captured ones do. Other tenants (a managed
service provider's customers) see the same profiles and their own scores (`customer_scores`). Shapes and their
sources: docs/design.md#microsoft-graph-facts. Deterministic: the same data every run.
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta
from typing import Any

TENANT = "4a7c1e2b-9d3f-4e8a-b6c5-0f1e2d3c4b5a"

# id, title, category, service, max score, tier, action type, user impact, implementation cost, threats
CONTROLS: list[tuple[str, str, str, str, float, str, str, str | None, str | None, list[str]]] = [
    ("AdminMFAV2", "Ensure multifactor authentication is enabled for all users in administrative roles", "Identity", "AzureAD", 10, "Core", "Config", "Low", "Low", ["Password Cracking", "Account Breach", "Elevation of Privilege"]),
    ("MFARegistrationV2", "Ensure all users can complete multifactor authentication", "Identity", "AzureAD", 9, "Core", "Config", "Moderate", "Moderate", ["Password Cracking", "Account Breach"]),
    ("BlockLegacyAuthentication", "Enable Conditional Access policies to block legacy authentication", "Identity", "AzureAD", 8, "Core", "Config", "Moderate", "Moderate", ["Password Spray", "Account Breach"]),
    ("SelfServicePasswordReset", "Enable self-service password reset", "Identity", "AzureAD", 1, "Core", "Config", "Moderate", "Low", ["Account Breach"]),
    ("PWAgePolicyNew", "Set the 'Password expiration policy' to 'Set passwords to never expire (recommended)'", "Identity", "AzureAD", 8, "Core", "Config", "Moderate", "Low", ["Password Cracking"]),
    ("RoleOverlap", "Use least privileged administrative roles", "Identity", "AzureAD", 1, "Core", "Review", "Low", "Low", ["Elevation of Privilege"]),
    ("OneAdmin", "Designate more than one global admin", "Identity", "AzureAD", 1, "Core", "Config", "Low", "Low", ["Account Breach"]),
    ("SigninRiskPolicy", "Turn on sign-in risk policy", "Identity", "AzureAD", 7, "Defense in Depth", "Config", "Moderate", "Moderate", ["Account Breach", "Password Spray"]),
    ("UserRiskPolicy", "Turn on user risk policy", "Identity", "AzureAD", 7, "Defense in Depth", "Config", "Moderate", "Moderate", ["Account Breach"]),
    ("IntegratedApps", "Do not allow users to grant consent to unreliable applications", "Identity", "AzureAD", 4, "Core", "Config", "Moderate", "Low", ["Consent Phishing", "Data Exfiltration"]),
    ("aad_admin_consent_workflow", "Ensure the admin consent workflow is enabled", "Identity", "AzureAD", 2, "Core", "Config", "Low", "Low", ["Consent Phishing"]),
    ("aad_limited_administrative_roles", "Ensure 'Microsoft Azure Management' is limited to administrative roles", "Identity", "AzureAD", 8, "Core", "Config", "Low", "Low", ["Elevation of Privilege"]),
    ("aad_password_protection", "Enable Microsoft Entra ID Identity Protection password protection", "Identity", "AzureAD", 1, "Core", "Config", None, "Unknown", ["Password Cracking"]),
    ("aad_sign_in_freq_session_timeout", "Ensure sign-in frequency is enabled and browser sessions are not persistent for administrative users", "Identity", "AzureAD", 8, "Core", "Config", "Low", "Low", ["Account Breach"]),
    ("aad_third_party_apps", "Ensure third-party integrated applications are not allowed", "Identity", "AzureAD", 2, "Core", "Config", "Moderate", "Low", ["Data Exfiltration"]),
    ("aad_custom_banned_passwords", "Ensure custom banned passwords lists are used", "Identity", "AzureAD", 1, "Defense in Depth", "Config", "Low", "Low", ["Password Spray"]),
    ("aad_phishing_MFA_strength", "Ensure phishing-resistant MFA strength is required for administrators", "Identity", "AzureAD", 8, "Advanced", "Config", "Moderate", "Moderate", ["Phishing", "Account Breach"]),
    ("AATP_DormantAccounts", "Remove dormant accounts from sensitive groups", "Identity", "Azure ATP", 5, "Defense in Depth", "Review", "Low", "Low", ["Elevation of Privilege", "Lateral Movement"]),
    ("AATP_UnsecureKerberosDelegation", "Stop clear text credentials exposure", "Identity", "Azure ATP", 5, "Defense in Depth", "Config", "Low", "Moderate", ["Credential Theft"]),
    ("mdo_atpprotection", "Turn on Safe Attachments for SharePoint, OneDrive, and Microsoft Teams", "Apps", "MDO", 8, "Core", "Config", "Low", "Low", ["Malware", "Data Exfiltration"]),
    ("mdo_safelinksforOfficeApps", "Ensure Safe Links for Office Applications is Enabled", "Apps", "MDO", 9, "Core", "Config", "Low", "Low", ["Phishing"]),
    ("mdo_safeattachments", "Ensure that an anti-malware policy is created for Safe Attachments", "Apps", "MDO", 8, "Core", "Config", "Low", "Low", ["Malware"]),
    ("mdo_antiphishingpolicies", "Set up anti-phishing policies", "Apps", "MDO", 8, "Core", "Config", "Low", "Low", ["Phishing", "Spoofing"]),
    ("mdo_zapspam", "Ensure that Zero-hour auto purge for spam is on", "Apps", "MDO", 6, "Core", "Config", "Low", "Low", ["Spam"]),
    ("mdo_zapphish", "Ensure that Zero-hour auto purge for phishing is on", "Apps", "MDO", 6, "Core", "Config", "Low", "Low", ["Phishing"]),
    ("mdo_commonattachmentsfilter", "Ensure the Common Attachment Types Filter is enabled", "Apps", "MDO", 5, "Core", "Config", "Low", "Low", ["Malware"]),
    ("mdo_spam_notifications_only_for_admins", "Ensure all forms of mail forwarding are blocked and/or disabled", "Apps", "MDO", 4, "Core", "Config", "Moderate", "Low", ["Data Exfiltration"]),
    ("mdo_phishthresholdlevel", "Set the phishing email level threshold at 2 or higher", "Apps", "MDO", 9, "Core", "Config", "Low", "Low", ["Phishing"]),
    ("exo_mailboxaudit", "Ensure mailbox auditing for all users is Enabled", "Apps", "EXO", 5, "Core", "Config", "Low", "Low", ["Malicious Insider"]),
    ("exo_outlookaddins", "Ensure users installing Outlook add-ins is not allowed", "Apps", "EXO", 5, "Core", "Config", "Moderate", "Low", ["Data Exfiltration", "Malware"]),
    ("exo_storageproviderrestricted", "Ensure additional storage providers are restricted in Outlook on the web", "Apps", "EXO", 3, "Core", "Config", "Moderate", "Low", ["Data Exfiltration"]),
    ("exo_individualsharing", "Ensure calendar details sharing with external users is disabled", "Apps", "EXO", 3, "Core", "Config", "Moderate", "Low", ["Data Exfiltration"]),
    ("exo_oauth2clientprofileenabled", "Ensure modern authentication for Exchange Online is enabled", "Apps", "EXO", 6, "Core", "Config", "Low", "Low", ["Password Spray"]),
    ("NonOwnerAccess", "Review mailbox access by non-owners bi-weekly", "Data", "EXO", 5, "Core", "Review", "Low", "Low", ["Account Breach", "Data Exfiltration", "Malicious Insider"]),
    ("CustomerLockBoxEnabled", "Turn on customer lockbox feature", "Data", "EXO", 3, "Advanced", "Config", "Low", "High", ["Data Exfiltration"]),
    ("DLPEnabled", "Turn on data loss prevention policies", "Data", "SCC", 10, "Core", "Config", "Moderate", "Moderate", ["Data Exfiltration", "Data Spillage"]),
    ("InformationProtectionPolicies", "Apply Data Loss Prevention policies", "Data", "MIP", 5, "Core", "Config", "Moderate", "Moderate", ["Data Spillage"]),
    ("mip_autosensitivitylabelspolicies", "Create auto-labeling policies for sensitivity labels", "Data", "MIP", 5, "Defense in Depth", "Config", "Moderate", "Moderate", ["Data Spillage"]),
    ("mip_sensitivitylabelspolicies", "Publish sensitivity labels", "Data", "MIP", 5, "Core", "Config", "Moderate", "Moderate", ["Data Exfiltration"]),
    ("mip_DLP_policies", "Extend data loss prevention to devices", "Data", "MIP", 5, "Defense in Depth", "Config", "Moderate", "High", ["Data Exfiltration"]),
    ("spo_sharing_links", "Ensure that SharePoint guest users cannot share items they don't own", "Data", "SPO", 3, "Core", "Config", "Moderate", "Low", ["Data Exfiltration"]),
    ("spo_idle_session_timeout", "Ensure idle session timeout is set for SharePoint", "Data", "SPO", 3, "Core", "Config", "Moderate", "Low", ["Account Breach"]),
    ("spo_external_sharing_restricted", "Ensure external content sharing is restricted", "Data", "SPO", 4, "Core", "Config", "High", "Low", ["Data Exfiltration"]),
    ("AuditLogSearch", "Turn on audit data recording", "Data", "SCC", 5, "Core", "Config", "Low", "Low", ["Malicious Insider"]),
    ("meeting_restrictanonymousjoin_v1", "Only invited users should be automatically admitted to Teams meetings", "Apps", "Microsoft Teams", 3, "Core", "Config", "Moderate", "Low", ["Data Exfiltration"]),
    ("meeting_autoadmitusers_v1", "Restrict anonymous users from starting Teams meetings", "Apps", "Microsoft Teams", 2, "Core", "Config", "Low", "Low", ["Data Exfiltration"]),
    ("teams_external_access", "Ensure external domains are restricted in Teams", "Apps", "Microsoft Teams", 3, "Core", "Config", "Moderate", "Low", ["Phishing"]),
    ("scid_2016", "Turn on PUA protection in block mode", "Device", "MDATP", 8, "Core", "Config", "Low", "Low", ["Malware"]),
    ("scid_5094", "Enable Microsoft Defender for Endpoint on all devices", "Device", "MDATP", 9, "Core", "Config", "Low", "Moderate", ["Malware", "Ransomware"]),
    ("scid_2010", "Turn on Microsoft Defender Antivirus", "Device", "MDATP", 9, "Core", "Config", "Low", "Low", ["Malware"]),
    ("scid_2011", "Update Microsoft Defender Antivirus definitions", "Device", "MDATP", 8, "Core", "Config", "Low", "Low", ["Malware"]),
    ("scid_2012", "Disable 'Password Manager'", "Device", "MDATP", 3, "Defense in Depth", "Config", "Moderate", "Low", ["Credential Theft"]),
    ("scid_2090", "Turn on Microsoft Defender Firewall", "Device", "MDATP", 7, "Core", "Config", "Low", "Low", ["Lateral Movement"]),
    ("scid_91", "Block abuse of exploited vulnerable signed drivers", "Device", "MDATP", 8, "Defense in Depth", "Config", "Low", "Moderate", ["Elevation of Privilege"]),
    ("scid_2501", "Enable 'Local Security Authority (LSA) protection'", "Device", "MDATP", 7, "Defense in Depth", "Config", "Low", "Moderate", ["Credential Theft"]),
    ("scid_6086", "Update Microsoft Edge for Windows", "Device", "MDATP", 5, "Core", "Config", "Low", "Low", ["Exploit"]),
    ("Intune_DeviceCompliance", "Require devices to be marked as compliant", "Device", "Intune", 6, "Core", "Config", "Moderate", "Moderate", ["Account Breach"]),
    ("Intune_AppProtection", "Apply app protection policies to mobile devices", "Device", "Intune", 5, "Core", "Config", "Moderate", "Moderate", ["Data Exfiltration"]),
    ("11770.MDA_Google_EnableTwoFactorAuth", "Enable 2-Step Verification for all users in Google Workspace", "Apps", "MDA_Google", 8, "Core", "Config", "Moderate", "Unknown", ["Account Breach"]),
    ("11770.MDA_Google_AdminRecovery", "Turn off account recovery for super admins in Google Workspace", "Apps", "MDA_Google", 3, "Defense in Depth", "Config", None, None, ["Account Breach"]),
    ("11801.MDA_Salesforce_SessionTimeout", "Set the Salesforce session timeout to 15 minutes or less", "Apps", "MDA_Salesforce", 3, "Core", "Config", "Low", "Unknown", ["Account Breach"]),
    ("11822.MDA_GitHub_RequireTwoFactor", "Require two-factor authentication for the GitHub organization", "Apps", "MDA_GitHub", 6, "Core", "Config", "Moderate", "Unknown", ["Account Breach", "Source Code Theft"]),
    ("mde_onboard_servers", "Onboard servers to Microsoft Defender for Endpoint", "Infrastructure", "MDATP", 9, "Core", "Config", "Low", "Moderate", ["Malware", "Lateral Movement"]),
    ("azure_defender_servers", "Enable Microsoft Defender for Servers", "Infrastructure", "Defender for Cloud", 6, "Defense in Depth", "Config", "Low", "High", ["Exploit"]),
    ("azure_storage_https_only", "Require secure transfer to storage accounts", "Infrastructure", "Defender for Cloud", 3, "Core", "Config", "Low", "Low", ["Data Exfiltration"]),
    ("azure_keyvault_purge_protection", "Enable purge protection on key vaults", "Infrastructure", "Defender for Cloud", 2, "Core", "Config", "Low", "Low", ["Data Destruction"]),
]  # fmt: skip
DEPRECATED = {"PWAgePolicyNew"}
MISSING_FROM_SCORES = {"azure_keyvault_purge_protection"}  # real snapshots leave some controls out
# Defender for Cloud Apps' SaaS controls for apps this tenant may not have connected: the bulk of real catalogues.
SAAS_APPS = [("Okta", 11811), ("Salesforce", 11812), ("ServiceNow", 11833), ("Zoom", 11844), ("Box", 11855),
             ("Dropbox", 11866), ("Atlassian", 11877), ("Workday", 11888), ("DocuSign", 11899), ("Slack", 11900),
             ("AWS", 11911), ("GCP", 11922), ("Citrix", 11933), ("Egnyte", 11944), ("Miro", 11955),
             ("NetDocuments", 11966), ("Smartsheet", 11977), ("Webex", 11988)]  # fmt: skip
SAAS_SETTINGS = [("EnforceMFA", "Require multifactor authentication for all users in {app}", 8),
                 ("SessionTimeout", "Set the {app} session timeout to 15 minutes or less", 3),
                 ("PasswordPolicy", "Enforce a strong password policy in {app}", 5),
                 ("AdminAudit", "Turn on audit logging for administrator actions in {app}", 4),
                 ("ExternalSharing", "Restrict external sharing in {app}", 6),
                 ("IPRestrictions", "Restrict {app} sign-in to trusted IP ranges", 4),
                 ("DeviceTrust", "Allow only managed devices to sign in to {app}", 5),
                 ("LoginAlerts", "Alert administrators on suspicious sign-ins to {app}", 2),
                 ("AppPermissions", "Review third-party app permissions in {app}", 3),
                 ("InactiveUsers", "Disable inactive user accounts in {app}", 2),
                 ("SSOEnforced", "Require single sign-on through Microsoft Entra ID for {app}", 9),
                 ("APIKeysRotation", "Rotate {app} API keys at least every 90 days", 3),
                 ("DataExport", "Restrict bulk data export in {app}", 4)]  # fmt: skip
SCORED_SAAS = 55  # this tenant connected a few apps: their first controls are scored


def remediation_html(control_id: str, title: str, service: str) -> str:
    """The kind of HTML Graph returns: paragraphs, an ordered list, bold and a link."""
    portal = {
        "AzureAD": "https://entra.microsoft.com",
        "MDO": "https://security.microsoft.com/threatpolicy",
        "EXO": "https://admin.exchange.microsoft.com",
        "MDATP": "https://security.microsoft.com/securescore",
        "Microsoft Teams": "https://admin.teams.microsoft.com",
    }.get(service, "https://security.microsoft.com")
    return (
        f"<p>To address this: <b>{title}</b>.</p>"
        f'<ol><li>Sign in to the <a href="{portal}">{service} admin center</a> as an administrator.</li>'
        "<li>Open the policy this recommendation names &amp; change the setting.</li>"
        f"<li>Save, then wait up to 24 hours for Secure Score to reflect it.</li></ol>"
        f'<p>Reference: <a href="https://learn.microsoft.com/defender-xdr/microsoft-secure-score">Secure Score</a> '
        f"({control_id}).</p>"
    )


def saas_controls() -> list[tuple[str, str, str, str, float, str, str, str | None, str | None, list[str]]]:
    """The generated Defender for Cloud Apps controls, in rank order after the hand-written ones."""
    return [
        (f"{number}.MDA_{app}_{setting}", title.format(app=app), "Apps", f"MDA_{app}", float(points),
         "Core" if points >= 5 else "Defense in Depth", "Config", "Moderate", "Unknown", ["Account Breach"])
        for app, number in SAAS_APPS
        for setting, title, points in SAAS_SETTINGS
    ]  # fmt: skip


def profiles(tenant: str = TENANT) -> list[dict[str, Any]]:
    """The control profiles, ordered by rank as Graph lists them: the same catalogue in every tenant ("the full set of
    possible improvements, regardless of license", MicrosoftDocs/microsoft-365-docs#2067), each naming its tenant."""
    result = []
    for rank, (cid, title, category, service, max_score, tier, action, impact, cost, threats) in enumerate(
        CONTROLS + saas_controls(), start=1
    ):
        result.append(
            {
                "id": cid,
                "azureTenantId": tenant,
                "actionType": action,
                "actionUrl": "https://security.microsoft.com/securescore?viewid=actions"
                if not cid.startswith("scid_")
                else f"https://security.microsoft.com/security-recommendations?search={cid}",
                "controlCategory": category,
                "title": title,
                "complianceInformation": [],
                "controlStateUpdates": [
                    {
                        "assignedTo": None,
                        "comment": None,
                        "state": "Default",
                        "updatedBy": None,
                        "updatedDateTime": None,
                    }
                ],
                "deprecated": cid in DEPRECATED,
                "implementationCost": cost,
                "lastModifiedDateTime": None,
                "maxScore": float(max_score),
                "rank": rank,
                "remediation": remediation_html(cid, title, service),
                "remediationImpact": f"<p>Users may notice the change to <i>{service}</i> settings.</p>",
                "service": service,
                "threats": threats,
                "tier": tier,
                "userImpact": impact,
                "vendorInformation": {
                    "provider": "SecureScore",
                    "providerVersion": None,
                    "subProvider": None,
                    "vendor": "Microsoft",
                },
            }
        )
    return result


def initial_scores(seed: int = 7) -> dict[str, float]:
    """Today's score per *scored* control (a control left out is not scored for this tenant): about a third
    completed, a third partial, a third nothing."""
    rng = random.Random(seed)
    scores = {}
    scored = [c for c in CONTROLS if c[0] not in MISSING_FROM_SCORES] + saas_controls()[:SCORED_SAAS]
    for cid, _title, _category, _service, max_score, *_ in scored:
        roll = rng.random()
        scores[cid] = (
            max_score if roll < 0.35 else round(max_score * rng.choice([0.25, 0.5, 0.75]), 2) if roll < 0.65 else 0.0
        )
    scores["AdminMFAV2"] = 0.0  # the demo's first ticket: not done yet
    return scores


def customer_scores(tenant: str) -> dict[str, float]:
    """Another tenant's scored controls and scores, deterministic per tenant id and different from the home
    tenant's: each hand-written control scored with a chance of two in three, a few of the SaaS controls, about a
    third of the scored ones completed. `AdminMFAV2` is scored and not done in every tenant, so the same control
    can be open (and ticketed) in several tenants at once."""
    rng = random.Random(hashlib.sha256(tenant.lower().encode()).hexdigest())
    scored = [c for c in CONTROLS if c[0] not in MISSING_FROM_SCORES and rng.random() < 2 / 3]
    scored += saas_controls()[: rng.randint(5, 40)]
    scores = {
        cid: max_score if (roll := rng.random()) < 0.3 else round(max_score * rng.choice([0.25, 0.5]), 2) if roll < 0.55
        else 0.0
        for cid, _title, _category, _service, max_score, *_ in scored
    }  # fmt: skip
    scores["AdminMFAV2"] = 0.0
    return scores


def seats(tenant: str) -> tuple[int, int]:
    """(active users, licensed users) of a tenant: the home tenant's as captured, others' from the id."""
    if tenant == TENANT:
        return 412, 450
    active = random.Random(tenant).randint(20, 2000)
    return active, active + active // 10


# The averages Secure Score compares a tenant with, per `basis` ("Depending on the type of average: AllTenants,
# TotalSeats, IndustryTypes"), with `averageScore` ("Average score within specified basis"):
# https://learn.microsoft.com/en-us/graph/api/resources/averagecomparativescore and the `averageComparativeScores`
# of https://learn.microsoft.com/en-us/graph/api/resources/securescore. Live answers carry more members than the
# documented two (identityScore, SeatSizeRangeLowerValue, ...; docs/design.md#microsoft-graph-facts), kept here.
# `averageScore` is a percent of the maximum (docs/api.md#a-tenants-review), so the simulator's sit near 40-45.
COMPARATIVE_BASES: tuple[tuple[str, float, dict[str, Any]], ...] = (
    ("AllTenants", 41.2, {"identityScore": 60.1, "identityScoreMax": 100.0}),
    ("TotalSeats", 43.7, {"SeatSizeRangeLowerValue": "100", "SeatSizeRangeUpperValue": "500"}),
    ("IndustryTypes", 38.9, {}),
)


def comparative(day: datetime) -> list[dict[str, Any]]:
    """The day's averages: they drift a little from day to day, as other tenants' scores move (deterministic)."""
    drift = (day.toordinal() % 30) / 10
    return [
        {"basis": basis, "averageScore": round(base + drift, 2), **extra} for basis, base, extra in COMPARATIVE_BASES
    ]


def snapshot(
    day: datetime,
    profiles: list[dict[str, Any]],
    scores: dict[str, float],
    *,
    older: bool = False,
    tenant: str = TENANT,
) -> dict[str, Any]:
    """One daily `secureScore` with `controlScores` for the scored controls (and the undocumented fields live
    tenants show; an `older` one as captured older snapshots are: `description: null`, fewer fields)."""
    controls = []
    for profile in profiles:
        cid, max_score = profile["id"], float(profile.get("maxScore") or 0.0)
        if cid not in scores:
            continue
        score = scores[cid]
        entry: dict[str, Any] = {
            "controlCategory": profile.get("controlCategory"),
            "controlName": cid,
            "description": None if older else f"{profile.get('title')}.",
            "score": score,
            "scoreInPercentage": round(100 * score / max_score, 2) if max_score else 0.0,
            "implementationStatus": ""
            if older
            else "You have completed this action."
            if score >= max_score
            else f"{int(score * 10)} of {int(max_score * 10)} items are configured.",
        }
        if not older:
            entry.update(
                lastSynced=(day - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                count=str(int(score * 10)),
                total=str(int(max_score * 10)),
                on="true",
            )
        controls.append(entry)
    active, licensed = seats(tenant)
    return {
        "id": f"{tenant}_{day.strftime('%Y-%m-%d')}",
        "azureTenantId": tenant,
        "activeUserCount": active,
        "createdDateTime": day.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "currentScore": round(sum(c["score"] for c in controls), 2),
        "enabledServices": ["HasExchange", "HasSharePoint", "HasOD4B", "HasYammer", "HasTeams"],
        "licensedUserCount": licensed,
        "maxScore": float(sum(float(p.get("maxScore") or 0.0) for p in profiles if p["id"] in scores)),
        "averageComparativeScores": comparative(day),
        "controlScores": controls,
        "vendorInformation": {
            "provider": "SecureScore",
            "providerVersion": None,
            "subProvider": None,
            "vendor": "Microsoft",
        },
    }


def history(
    today: datetime, profiles: list[dict[str, Any]], scores: dict[str, float], days: int = 90, *, tenant: str = TENANT
) -> list[dict[str, Any]]:
    """`days` snapshots, newest first; the score climbs over the quarter as controls get done, and one control done
    long ago regressed for a week in the middle of it and was done again (controlScore's `score` "varies day by day":
    https://learn.microsoft.com/en-us/graph/api/resources/controlscore), so a quarter shows both."""
    rng = random.Random(11 if tenant == TENANT else tenant)
    done_on = {cid: rng.randint(0, days - 1) for cid in scores}  # the day (ago) each control reached today's score
    maxima = {p["id"]: float(p.get("maxScore") or 0.0) for p in profiles}
    early = sorted(c for c, s in scores.items() if s and s >= maxima.get(c, 0.0) and done_on[c] >= days * 2 // 3)
    lapse = range(days // 2, days // 2 + 8) if early else range(0)  # the days (ago) the first of them was undone
    midnight = today.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    snapshots = []
    for ago in range(days):
        then = {cid: (score if ago <= done_on[cid] else round(score / 2, 2)) for cid, score in scores.items()}
        if ago in lapse:
            then[early[0]] = 0.0
        snapshots.append(snapshot(midnight - timedelta(days=ago), profiles, then, older=ago >= 30, tenant=tenant))
    return snapshots
