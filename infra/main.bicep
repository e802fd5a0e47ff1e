// The ServiceNow connector for Microsoft 365 security: a Flex Consumption Python function app with its
// managed identity, storage (deployment package, host state, ticket store), Key Vault, monitoring, and an
// optional static egress IP for ServiceNow IP filtering.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; seeds the resource names.')
param environmentName string

@minLength(1)
@description('Region for every resource (one that offers Flex Consumption).')
@metadata({ azd: { type: 'location' } })
param location string

@description('ServiceNow instance name (contoso) or base URL (https://contoso.service-now.com).')
param serviceNowInstance string

@description('Client ID of the OAuth client in ServiceNow (System OAuth > Application Registry).')
param serviceNowClientId string

@secure()
@description('Client secret of the OAuth client, written to Key Vault as servicenow-client-secret when given; empty leaves the vault\'s secret as it is (set it once, admin guide section 5).')
param serviceNowClientSecret string = ''

@description('Table tickets are created in.')
param serviceNowTable string = 'incident'

@description('Optional JSON object overriding the field mapping (docs/api.md: The ServiceNow record).')
param serviceNowFieldMap string = ''

@description('Refresh Token Lifespan of the OAuth client, in seconds, if changed from ServiceNow\'s default.')
param serviceNowRefreshTokenLifespan string = '8640000'

@description('NCRONTAB schedule of the status sync (UTC).')
param statusSyncSchedule string = '0 */5 * * * *'

@description('Microsoft Graph base URL of the tenant\'s cloud (https://graph.microsoft.us for US Government).')
param graphUrl string = 'https://graph.microsoft.com'

@description('NCRONTAB schedule of the Secure Score refresh (UTC); Secure Score itself updates about daily.')
param secureScoreSchedule string = '0 0 */4 * * *'

@allowed([ 'comment', 'off' ])
@description('comment: write each ticket\'s number, status and link to its control\'s notes in Secure Score.')
param secureScoreWriteBack string = 'comment'

@allowed([ 'true', 'false' ])
@description('true: resolve a ticket when Secure Score reports its control completed, reopen it on regression.')
param secureScoreAutoResolve string = 'true'

@description('Client ID of an existing Entra app registration for sign-in; empty creates one (Application Developer).')
param entraAppClientId string = ''

@description('Client ID of an existing multi-tenant reader app for other tenants (admin guide: Add a tenant); empty creates one unless ENTRA_APP_CLIENT_ID is given.')
param readerAppClientId string = ''

@description('Object ID of the principal running the deployment: azd fills AZURE_PRINCIPAL_ID in itself (azure-dev pkg/infra/provisioning/bicep); it becomes an owner of the app registrations.')
param deployerPrincipalId string = ''

@description('Object IDs, comma-separated, of principals to make owners of the app registrations besides the deployer (the pipeline\'s service principal when a person deploys first, or the person when the pipeline does).')
param entraAppOwnerIds string = ''

@description('Route outbound traffic through a NAT gateway with one static public IP, for ServiceNow IP filtering.')
param staticEgressEnabled bool = false

@maxLength(8)
@description('Appended to the Key Vault\'s name: a redeployment within 90 days of azd down needs a new name (purge protection keeps the old one) unless the old vault is recovered (admin guide section 9).')
param keyVaultNameSuffix string = ''

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = '${abbrs.webSitesFunctions}servicenow-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
// The host name the Graph modules register as redirect URIs: the public cloud's App Service domain, the only cloud the
// Graph Bicep extension is documented for (elsewhere the registrations are made by hand: admin guide section 1a). It
// cannot be the site's defaultHostName, which the sign-in app's client ID is needed to configure (a cycle).
var hostName = '${functionAppName}.azurewebsites.net'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

// The app's identity for storage, Key Vault and Application Insights; roles are granted in app/rbac.bicep.
module identity 'br/public:avm/res/managed-identity/user-assigned-identity:0.4.1' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}servicenow-${resourceToken}'
    location: location
    tags: tags
  }
}

// Flex Consumption: one app per plan, Linux.
module plan 'br/public:avm/res/web/serverfarm:0.1.1' = {
  name: 'plan'
  scope: rg
  params: {
    name: '${abbrs.webServerFarms}${resourceToken}'
    sku: {
      name: 'FC1'
      tier: 'FlexConsumption'
    }
    reserved: true
    location: location
    tags: tags
  }
}

// Deployment package, host state (timer locks, keys) and the ticket store's tables; no shared keys.
module storage 'br/public:avm/res/storage/storage-account:0.8.3' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    skuName: 'Standard_LRS' // locally redundant: enough for a host's state and a store the status sync can rebuild (adoption)
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false // identity-based access only
    allowCrossTenantReplication: false // object replication never leaves this tenant
    defaultToOAuthAuthentication: true // the portal uses Entra ID, never keys
    dnsEndpointType: 'Standard'
    minimumTlsVersion: 'TLS1_2'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    blobServices: {
      containers: [ { name: deploymentContainerName } ]
    }
  }
}

// Holds servicenow-client-secret (from the @secure() parameter) and the token bundle the app rewrites.
module vault 'br/public:avm/res/key-vault/vault:0.13.3' = {
  name: 'vault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}${keyVaultNameSuffix}'
    location: location
    tags: tags
    sku: 'standard'
    enableRbacAuthorization: true // roles, not access policies
    enableVaultForDeployment: false // no VM reads secrets from it
    enableVaultForTemplateDeployment: false // no other template reads secrets from it
    enableVaultForDiskEncryption: false // no disk encryption keys here
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true // a deleted secret cannot be purged before its retention ends
    publicNetworkAccess: 'Enabled'
    secrets: empty(serviceNowClientSecret) ? [] : [
      {
        name: 'servicenow-client-secret'
        value: serviceNowClientSecret
        contentType: 'text/plain'
      }
    ]
  }
}

module logAnalytics 'br/public:avm/res/operational-insights/workspace:0.11.1' = {
  name: 'logs'
  scope: rg
  params: {
    name: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    location: location
    tags: tags
    dataRetention: 30
  }
}

module appInsights 'br/public:avm/res/insights/component:0.6.0' = {
  name: 'monitoring'
  scope: rg
  params: {
    name: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    workspaceResourceId: logAnalytics.outputs.resourceId
    disableLocalAuth: true // Entra ID ingestion only: the app's identity has Monitoring Metrics Publisher
    disableIpMasking: false // client IPs are masked, not stored
  }
}

// Optional: VNet integration + NAT gateway, so every outbound call leaves from one static IP.
module network 'app/network.bicep' = if (staticEgressEnabled) {
  name: 'network'
  scope: rg
  params: {
    location: location
    tags: tags
    virtualNetworkName: '${abbrs.networkVirtualNetworks}${resourceToken}'
    natGatewayName: '${abbrs.networkNatGateways}${resourceToken}'
    publicIpName: '${abbrs.networkPublicIPAddresses}${resourceToken}'
  }
}

// Owners of both registrations: whoever deploys and the principals named in ENTRA_APP_OWNER_IDS (GUIDs the
// preprovision hook checks), so either deployer may update them. Not deployer() or lambdas: checkov's Bicep parser
// (pycep 0.5.1) knows neither, and the gate fails on a file it cannot parse.
var appOwners = union(empty(deployerPrincipalId) ? [] : [ deployerPrincipalId ], empty(entraAppOwnerIds) ? [] : split(replace(entraAppOwnerIds, ' ', ''), ','))

// Sign-in: the app registration with the two app roles, through the Microsoft Graph Bicep extension. Given an
// existing registration (ENTRA_APP_CLIENT_ID) no Graph resource is deployed: the way where the extension cannot
// run (its docs list the public cloud only; admin guide section 1a has the steps by hand).
module entra 'app/entra.bicep' = if (empty(entraAppClientId)) {
  name: 'entra'
  scope: rg
  params: {
    uniqueName: 'm365-servicenow-connector-${resourceToken}'
    displayName: 'ServiceNow connector for Microsoft 365 security (${environmentName})'
    hostName: hostName
    managedIdentityPrincipalId: identity.outputs.principalId
    ownerIds: appOwners
  }
}


var authClientId = empty(entraAppClientId) ? entra!.outputs.clientId : entraAppClientId

// Other tenants: the multi-tenant reader app whose credential is the managed identity
// (docs/design.md#several-microsoft-tenants). Like the sign-in app it is not deployed when a registration is given, nor
// when ENTRA_APP_CLIENT_ID says the deployer brings their own registrations (no Graph resource at all, as where the
// extension cannot run); without one, the connector reads only its own tenant.
module reader 'app/reader.bicep' = if (empty(readerAppClientId) && empty(entraAppClientId)) {
  name: 'reader'
  scope: rg
  params: {
    uniqueName: 'm365-servicenow-connector-reader-${resourceToken}'
    displayName: 'Secure Score reader for ServiceNow (${environmentName})'
    hostName: hostName
    managedIdentityPrincipalId: identity.outputs.principalId
    ownerIds: appOwners
  }
}

var readerClientId = !empty(readerAppClientId) ? readerAppClientId : (empty(entraAppClientId) ? reader!.outputs.clientId : '')

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    location: location
    tags: tags
    planId: plan.outputs.resourceId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    applicationInsightsName: appInsights.outputs.name
    authClientId: authClientId
    authIdentifierUri: empty(entraAppClientId) ? entra!.outputs.identifierUri : ''
    virtualNetworkSubnetId: staticEgressEnabled ? network!.outputs.appSubnetId : ''
    appSettings: {
      SERVICENOW_INSTANCE: serviceNowInstance
      SERVICENOW_CLIENT_ID: serviceNowClientId
      SERVICENOW_TABLE: serviceNowTable
      SERVICENOW_FIELD_MAP: serviceNowFieldMap
      SERVICENOW_REFRESH_TOKEN_LIFESPAN: serviceNowRefreshTokenLifespan
      KEY_VAULT_URL: vault.outputs.uri
      TICKET_STORE: 'tables'
      STATUS_SYNC_SCHEDULE: statusSyncSchedule
      ENTRA_TENANT_ID: tenant().tenantId
      ENTRA_AUDIENCE: authClientId // ID tokens and v2 access tokens carry the client ID as their audience
      ENTRA_AUTHORITY: environment().authentication.loginEndpoint
      GRAPH_URL: graphUrl
      SECURE_SCORE_SCHEDULE: secureScoreSchedule
      SECURE_SCORE_WRITE_BACK: secureScoreWriteBack
      SECURE_SCORE_AUTO_RESOLVE: secureScoreAutoResolve
      READER_APP_CLIENT_ID: readerClientId // empty: the home tenant only
      // APP_URL is set in app/api.bicep from the site's own defaultHostName, right in every cloud.
    }
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: vault.outputs.name
    appInsightsName: appInsights.outputs.name
    appPrincipalId: identity.outputs.principalId
  }
}

// azd writes every output into the environment's .env, and main.parameters.json reads that .env on the next run
// (learn azure-developer-cli manage-environment-variables): so no output has the name of a parameter's setting.
// ENTRA_APP_CLIENT_ID and READER_APP_CLIENT_ID mean "use this registration, create none"; the client IDs in use are
// SIGN_IN_APP_CLIENT_ID and TENANT_READER_APP_CLIENT_ID (tests/test_deployment.py runs the parameters file against
// these names). AZURE_LOCATION is azd's own setting, not an output.
@description('The connector\'s base URL.')
output APP_URL string = api.outputs.url
@description('The security center page: sign in with Entra ID (people need an app role or reader access).')
output PORTAL_URL string = '${api.outputs.url}/api/portal'
@description('Client ID of the app registration people and clients sign in to (assign its roles there).')
output SIGN_IN_APP_CLIENT_ID string = authClientId
@description('Client ID of the multi-tenant reader app each customer\'s admin consents to (admin guide: Add a tenant); empty when none.')
output TENANT_READER_APP_CLIENT_ID string = readerClientId
@description('Paste into the OAuth client\'s Redirect URL in ServiceNow (System OAuth > Application Registry).')
output OAUTH_REDIRECT_URI string = '${api.outputs.url}/api/oauth/callback'
@description('Allow this address in ServiceNow (System Security > IP Address Access Control) when IP filtering is on.')
output EGRESS_IP string = staticEgressEnabled ? network!.outputs.egressIp : ''
output KEY_VAULT_NAME string = vault.outputs.name
@description('Object ID of the app\'s managed identity: the postprovision hook grants it Graph SecurityEvents.ReadWrite.All when GRANT_GRAPH_PERMISSION=true.')
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_FUNCTION_NAME string = api.outputs.name
output AZURE_TENANT_ID string = tenant().tenantId
output APPLICATIONINSIGHTS_CONNECTION_STRING string = appInsights.outputs.connectionString
