// Static egress: the function app joins a VNet whose subnet sends all outbound traffic through a NAT gateway
// with one Standard public IP. (The app's own outbound IP list is not reliable on Flex Consumption.)
param location string
param tags object
param virtualNetworkName string
param natGatewayName string
param publicIpName string

resource egressIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = {
  name: publicIpName
  location: location
  tags: tags
  sku: { name: 'Standard' } // NAT gateways take Standard static IPs only
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
  }
}

resource nat 'Microsoft.Network/natGateways@2024-05-01' = {
  name: natGatewayName
  location: location
  tags: tags
  sku: { name: 'Standard' }
  properties: {
    idleTimeoutInMinutes: 4
    publicIpAddresses: [ { id: egressIp.id } ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: virtualNetworkName
  location: location
  tags: tags
  properties: {
    addressSpace: { addressPrefixes: [ '10.40.0.0/16' ] }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: '10.40.0.0/24'
          natGateway: { id: nat.id } // all outbound traffic leaves through the NAT gateway
          delegations: [
            {
              name: 'flex-consumption'
              properties: { serviceName: 'Microsoft.App/environments' } // the delegation Flex Consumption requires
            }
          ]
        }
      }
    ]
  }
}

output appSubnetId string = vnet.properties.subnets[0].id
output egressIp string = egressIp.properties.ipAddress
