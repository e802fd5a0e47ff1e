// Grants the function app's managed identity the Microsoft Graph application permission
// SecurityEvents.ReadWrite.All: read Secure Score and write ticket notes to its controls. Granting an app role
// needs a directory role (Privileged Role Administrator), so main.bicep deploys this only when
// grantGraphPermission is true; otherwise a directory admin runs the admin guide's command once.
extension microsoftGraphV1

@description('Object (principal) ID of the function app\'s user-assigned managed identity.')
param principalId string

var graphAppId = '00000003-0000-0000-c000-000000000000' // Microsoft Graph's well-known application ID
var securityEventsReadWriteAll = 'd903a879-88e0-4c09-b0c9-82f6a1333f84' // SecurityEvents.ReadWrite.All (application)

resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graphAppId
}

// Tokens of a managed identity are cached for up to 24 hours: the grant can take hours to apply.
resource grant 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  appRoleId: securityEventsReadWriteAll
  principalId: principalId
  resourceId: graph.id
}
